"""`manage.py demo` seeds a draft plan across the three demo repositories
with shared files, so a new user sees the planner's point at once."""

from io import StringIO

import pytest
from django.core.management import call_command

from beads import plans
from beads.models import Plan


@pytest.fixture(autouse=True)
def corral_home(settings, tmp_path):
    settings.CORRAL_HOME = tmp_path / "home"


@pytest.mark.django_db
def test_the_demo_seeds_one_draft_plan_across_three_repositories_with_a_shared_file(client, user):
    out = StringIO()
    call_command("demo", stdout=out)
    plan = Plan.objects.get()
    assert plan.status == "draft" and f"/plans/{plan.pk}/" in out.getvalue()
    waves = plans.waves_of(plan)
    beads = plans.plan_beads(plan).select_related("repository")
    assert {b.repository.slug for b in beads} == {"demo-api", "demo-web", "demo-infra"}
    assert all(len(w) <= plan.max_agents_per_wave for w in waves)
    wave_of = {b: n for n, wave in enumerate(waves) for b in wave}
    assert wave_of["api-8yna"] > wave_of["api-ohlv"] and wave_of["web-lx7j"] > wave_of["api-ohlv"]
    client.force_login(user)
    html = client.get(f"/plans/{plan.pk}/").content.decode()
    shared = html.split('id="shared-files"')[1]
    assert "demo-web:css/style.css" in shared and "in different waves" in shared
    assert "in the same wave" not in shared
