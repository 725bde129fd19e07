"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

Every service must be runnable (an image or a build) and every command an app
service runs must be a real command of this project.
"""

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands
from gunicorn.config import Config as GunicornConfig

ROOT = Path(__file__).resolve().parents[2]
SHARED_ENV = {
    "DATABASE_URL": "postgres://corral:corral@postgres:5432/corral",
    "REDIS_URL": "redis://redis:6379/0",
    "CORRAL_HOME": "/data",
}


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def app_services(services):
    return {name: s for name, s in services.items() if "build" in s}


def commands(command):
    """The argv lists a compose `command` runs: a list or a string, maybe `sh -c "a && b"`."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if len(argv) == 3 and argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and argv[1] == "-c":
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


def check_command(argv):
    """Fail unless argv is `python manage.py <a real command>` or gunicorn on a real WSGI app."""
    if argv[:1] == ["exec"]:
        argv = argv[1:]
    if argv[:2] in (["python", "manage.py"], ["python3", "manage.py"]):
        assert len(argv) > 2 and argv[2] in get_commands(), f"no management command in {argv}"
    elif argv[:1] == ["gunicorn"] or argv[1:3] == ["-m", "gunicorn"]:
        options = argv[1:] if argv[0] == "gunicorn" else argv[3:]
        parsed = GunicornConfig().parser().parse_args(options)
        assert len(parsed.args) == 1, f"gunicorn needs one WSGI app: {argv}"
        module, _, attr = parsed.args[0].partition(":")
        assert callable(getattr(importlib.import_module(module), attr or "application"))
    else:
        pytest.fail(f"not a command of this project: {argv}")


def test_every_service_has_an_image_or_a_build(services):
    assert {"postgres", "redis", "web", "worker", "lead"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert "healthcheck" in services["postgres"]


def test_app_services_run_real_commands(services):
    apps = app_services(services)
    assert {"web", "worker"} <= set(apps)
    for name, service in apps.items():
        assert service.get("command"), f"{name} has no command"
        for argv in commands(service["command"]):
            check_command(argv)


def test_web_migrates_then_serves_and_workers_take_the_queues(services):
    web = [
        argv[0] if argv[0] != "exec" else argv[1] for argv in commands(services["web"]["command"])
    ]
    assert web == ["python", "gunicorn"]
    assert commands(services["worker"]["command"]) == [
        ["python", "manage.py", "rqworker", "default"]
    ]
    assert commands(services["session-worker"]["command"]) == [
        ["python", "manage.py", "rqworker", "sessions"]
    ]
    assert services["session-worker"]["deploy"]["replicas"] == 2


def test_app_services_share_environment_and_data(services):
    for name, service in app_services(services).items():
        env = service["environment"]
        assert {k: env.get(k) for k in SHARED_ENV} == SHARED_ENV, name
        if name != "session-worker":
            assert any(str(v).endswith(":/data") for v in service["volumes"]), name


def test_session_workers_share_no_volume_and_reach_web_over_http(services):
    """As if on other machines: they clone over git over HTTP
    (tests/agents/test_remote_worker.py runs one that way)."""
    workers = services["session-worker"]
    assert workers["volumes"] == []
    assert workers["environment"]["CORRAL_URL"] == "http://web:8000"
    assert "sessions" not in commands(services["worker"]["command"])[0]


@pytest.mark.parametrize(
    "command, expected",
    [
        ("python manage.py migrate", [["python", "manage.py", "migrate"]]),
        (["python", "manage.py", "up"], [["python", "manage.py", "up"]]),
        (
            'sh -c "python manage.py migrate && exec gunicorn a.b:c"',
            [["python", "manage.py", "migrate"], ["exec", "gunicorn", "a.b:c"]],
        ),
    ],
)
def test_commands_splits_lists_strings_and_sh_c(command, expected):
    assert commands(command) == expected


def test_check_command_refuses_what_does_not_exist():
    with pytest.raises(AssertionError):
        check_command(["python", "manage.py", "no-such-command"])
    with pytest.raises(ModuleNotFoundError):
        check_command(["gunicorn", "no_such_module.wsgi:application", "--bind", "0.0.0.0:1"])


def test_dockerfile_uses_python_3_11():
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M | re.I)
    assert base and re.fullmatch(r"(docker\.io/(library/)?)?python:3\.11([.-]\S*)?", base[1])
    assert "pip install ." in dockerfile and "git" in dockerfile


def test_the_image_has_bubblewrap_and_the_app_services_may_start_it(services):
    """Checks and sessions run in bubblewrap: the image installs it, and every app
    service lifts what Docker forbids it, adding no capability."""
    assert re.search(r"apt-get install[^\n]*\bbubblewrap\b", (ROOT / "Dockerfile").read_text())
    for name, service in app_services(services).items():
        options = set(service.get("security_opt", []))
        assert {"seccomp=unconfined", "systempaths=unconfined"} <= options, name
        assert not service.get("privileged") and not service.get("cap_add"), name
