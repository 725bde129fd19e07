"""`manage.py agent`: create prints a token once, which then authenticates; rotate replaces it."""

import io

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent


def agent_cmd(*args):
    out = io.StringIO()
    call_command("agent", *args, stdout=out)
    return out.getvalue()


def printed_token(output):
    return next(line.split()[-1] for line in output.splitlines() if "crl_" in line)


@pytest.mark.django_db
def test_create_prints_a_token_that_authenticates():
    out = agent_cmd("create", "claude-1", "--preset", "claude-code")
    token = printed_token(out)
    agent = Agent.objects.authenticate(token)
    assert agent is not None and agent.name == "claude-1"
    assert agent.command[0] == "claude"
    assert token not in str(Agent.objects.values_list().get())  # only its hash is stored


@pytest.mark.django_db
def test_create_with_a_custom_command_and_external():
    agent_cmd(
        "create",
        "ext",
        "--preset",
        "shell",
        "--command",
        "my-agent --fast '{prompt}'",
        "--external",
    )
    agent = Agent.objects.get(name="ext")
    assert agent.command == ["my-agent", "--fast", "{prompt}"]
    assert agent.internal is False


@pytest.mark.django_db
def test_list_shows_agents_without_their_tokens():
    token = printed_token(agent_cmd("create", "a1", "--preset", "aider"))
    out = agent_cmd("list")
    assert "a1\taider\tinternal\tactive" in out
    assert token not in out


@pytest.mark.django_db
def test_rotate_retires_the_old_token():
    old = printed_token(agent_cmd("create", "a1", "--preset", "codex"))
    new = printed_token(agent_cmd("rotate", "a1"))
    assert new != old
    assert Agent.objects.authenticate(old) is None
    assert Agent.objects.authenticate(new).name == "a1"


@pytest.mark.django_db
def test_a_deactivated_agents_token_no_longer_authenticates():
    token = printed_token(agent_cmd("create", "a1", "--preset", "gemini"))
    Agent.objects.filter(name="a1").update(active=False)
    assert Agent.objects.authenticate(token) is None
    assert Agent.objects.authenticate("crl_not-a-token") is None
    assert Agent.objects.authenticate("") is None


@pytest.mark.django_db
def test_bad_input_is_refused_clearly():
    agent_cmd("create", "a1", "--preset", "shell", "--command", "true")
    with pytest.raises(CommandError, match="already exists"):
        agent_cmd("create", "a1", "--preset", "shell")
    with pytest.raises(CommandError, match="invalid choice"):
        agent_cmd("create", "a2", "--preset", "nope")
    with pytest.raises(CommandError, match="cannot parse --command"):
        agent_cmd("create", "a3", "--preset", "shell", "--command", "x 'y")
    with pytest.raises(CommandError, match="no agent named 'ghost'"):
        agent_cmd("rotate", "ghost")
