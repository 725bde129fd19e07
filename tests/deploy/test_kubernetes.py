"""deploy/kubernetes/, checked without a cluster or the kustomize binary.

The base and the example overlay are rendered here by a small renderer of the
few kustomize features they use (resources, images, namespace, strategic
merge patches by kind and name); it refuses any other, so the manifests stay
within what it renders as kustomize would. Every object is validated against
Kubernetes' own schemas (kubernetes-validate ships them: no network), KEDA's
objects against KEDA's CRD schema (tests/deploy/data/, with its source
commit), and the manifests against the app: its commands, its probe URLs, its
settings, its queue's Redis keys.
"""

import copy
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from django.urls import resolve

from agents import queues
from corral import health
from tests.corral.test_compose import check_command
from tests.workspace.test_settings_documented import PACKAGES, PLAIN, listed, names_in_code

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
EXAMPLE = KUBE / "overlays" / "example"
DATA = Path(__file__).parent / "data"
# A release with pods' user namespaces (hostUsers) on by default and
# appArmorProfile in the securityContext; the schemas are kubernetes-validate's.
K8S_VERSION = "1.33.0"
KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "images", "patches", "namespace"}
CLUSTER_SCOPED = {"Namespace", "RuntimeClass", "ClusterRole", "ClusterRoleBinding"}
KEDA_CRDS = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}
# Set in the Secret for KEDA's TriggerAuthentication only, never in a process's env.
KEDA_ONLY = {"REDIS_ADDRESS", "REDIS_PASSWORD"}


# The renderer


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(folder: Path, extra_patches: tuple[str, ...] = ()) -> list[dict]:
    """What `kustomize build folder` gives, for the features used here."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZE_KEYS
    assert not unknown, f"{folder}: the test's renderer does not know {unknown}"
    docs: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        docs += render(path) if path.is_dir() else load_documents(path)
    patches = [*kustomization.get("patches", []), *({"path": p} for p in extra_patches)]
    for patch in patches:
        assert set(patch) == {"path"}, f"only patches by file: {patch}"
        for change in load_documents(folder / patch["path"]):
            target = find(docs, change["kind"], change["metadata"]["name"])
            merge(target, change)
    for image in kustomization.get("images", []):
        for container in containers(docs):
            if image_name(container["image"]) == image["name"]:
                container["image"] = f"{image['newName']}:{image['newTag']}"
    if namespace := kustomization.get("namespace"):
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    return docs


def merge(target: dict, change: dict) -> None:
    """A strategic merge patch: maps merged, lists of named items merged by name,
    other values replaced; no $-directives."""
    for key, value in change.items():
        assert not key.startswith("$"), f"the renderer does not apply {key}"
        old = target.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merge(old, value)
        elif isinstance(old, list) and isinstance(value, list) and all(named(v) for v in value):
            by_name = {item["name"]: item for item in old if named(item)}
            for item in value:
                if item["name"] in by_name:
                    merge(by_name[item["name"]], item)
                else:
                    old.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def named(item: object) -> bool:
    return isinstance(item, dict) and "name" in item


def image_name(image: str) -> str:
    return image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image


def find(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def deployments(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


def pod(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def containers(docs: list[dict], init: bool = True) -> list[dict]:
    found = []
    for deployment in deployments(docs).values():
        found += pod(deployment)["containers"]
        if init:
            found += pod(deployment).get("initContainers", [])
    return found


RENDERINGS = {
    "base": lambda: render(BASE),
    "example": lambda: render(EXAMPLE),
    "example with gVisor": lambda: render(EXAMPLE, ("runtimeclass-gvisor.yaml",)),
}


@pytest.fixture(scope="module")
def base():
    return render(BASE)


@pytest.fixture(scope="module")
def example():
    return render(EXAMPLE)


# Schemas


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_object_is_valid_against_the_kubernetes_schemas(rendering):
    docs = RENDERINGS[rendering]()
    checked = 0
    for doc in docs:
        if doc["kind"] in KEDA_CRDS:
            continue
        try:  # strict: a misspelt field is an error, as kubectl's server-side validation says
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{rendering}: {doc['kind']}/{doc['metadata']['name']}: {e.message}")
        checked += 1
    assert checked >= 8


def keda_schema(kind: str) -> dict:
    crd = yaml.safe_load((DATA / KEDA_CRDS[kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(value: object, schema: dict, path: str = "") -> list[str]:
    """The fields the API server would prune: not in the CRD's structural schema."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if path == "" and key in ("apiVersion", "kind", "metadata"):  # the API's own
                continue
            if properties is not None and key in properties:
                found += unknown_fields(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(item, extra, f"{path}.{key}")
            else:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{n}]")
    return found


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_keda_objects_are_valid_against_kedas_crd_schema(rendering):
    keda = [doc for doc in RENDERINGS[rendering]() if doc["kind"] in KEDA_CRDS]
    assert {doc["kind"] for doc in keda} == set(KEDA_CRDS)
    for doc in keda:
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        schema = keda_schema(doc["kind"])
        jsonschema.Draft7Validator(schema).validate(doc)
        assert unknown_fields(doc, schema) == [], doc["kind"]


def test_the_crd_check_refuses_a_misspelt_field(base):
    scaled = copy.deepcopy(find(base, "ScaledObject", "corral-session-worker"))
    scaled["spec"]["maxReplicas"] = 3  # maxReplicaCount, misspelt
    assert unknown_fields(scaled, keda_schema("ScaledObject")) == [".spec.maxReplicas"]
    scaled["spec"]["minReplicaCount"] = "none"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(keda_schema("ScaledObject")).validate(scaled)


# What the manifests say, against the app


def test_the_base_is_namespace_agnostic_and_creates_no_secret(base):
    assert all("namespace" not in doc["metadata"] for doc in base)
    assert "Secret" not in {doc["kind"] for doc in base}
    kinds = {doc["kind"] for doc in base}
    assert {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"} <= kinds
    assert set(deployments(base)) == {
        "corral-web",
        "corral-worker",
        "corral-lead",
        "corral-ticker",
        "corral-session-worker",
    }


def test_the_example_overlay_sets_namespace_image_and_a_placeholder_secret(example):
    assert {doc["metadata"].get("namespace") for doc in example} == {"corral"}
    assert {c["image"] for c in containers(example)} == {"registry.example.com/corral:0.1.0"}
    secret = find(example, "Secret", "corral-secrets")
    assert all("CHANGE-ME" in value for key, value in secret["stringData"].items()
               if key != "REDIS_ADDRESS")  # fmt: skip
    config = find(example, "ConfigMap", "corral-config")["data"]
    assert config["ALLOWED_HOSTS"] == "corral.example.com,corral-web"
    assert config["CORRAL_HOME"] == "/data"  # the base's keys kept by the patch


def test_the_gvisor_option_puts_only_the_session_workers_under_gvisor():
    docs = render(EXAMPLE, ("runtimeclass-gvisor.yaml",))
    runtimes = {name: pod(d).get("runtimeClassName") for name, d in deployments(docs).items()}
    assert runtimes.pop("corral-session-worker") == "gvisor"
    assert set(runtimes.values()) == {None}


def test_the_scaled_object_scales_the_session_workers_on_the_sessions_queue(base):
    scaled = find(base, "ScaledObject", "corral-session-worker")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "corral-session-worker")
    worker = find(base, "Deployment", target["name"])
    (container,) = pod(worker)["containers"]
    assert container["command"] == ["python", "manage.py", "rqworker", queues.SESSIONS]
    sessions = queues.queue(queues.SESSIONS)
    lists = {t["name"]: t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
    assert lists == {"waiting": sessions.key, "running": sessions.started_job_registry.key}
    assert sessions.key == "rq:queue:sessions"  # what KEDA's redis trigger reads
    assert scaled["spec"]["advanced"]["scalingModifiers"]["formula"] == "waiting + running"
    assert all(t["type"] == "redis" for t in scaled["spec"]["triggers"])
    # Dispatch queues as many as the scaler may start workers for.
    config = find(base, "ConfigMap", "corral-config")["data"]
    assert int(config["CORRAL_SESSION_SLOTS"]) == scaled["spec"]["maxReplicaCount"]
    auth = find(base, "TriggerAuthentication", "corral-redis")
    assert {t["authenticationRef"]["name"] for t in scaled["spec"]["triggers"]} == {"corral-redis"}
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {"corral-secrets"}


def test_the_scalers_redis_database_is_the_example_redis_urls(example):
    url = find(example, "Secret", "corral-secrets")["stringData"]["REDIS_URL"]
    database = url.rsplit("/", 1)[1]
    triggers = find(example, "ScaledObject", "corral-session-worker")["spec"]["triggers"]
    assert {t["metadata"]["databaseIndex"] for t in triggers} == {database}


def test_session_workers_share_no_volume_and_the_others_share_the_canonical_one(base):
    apps = deployments(base)
    session = pod(apps.pop("corral-session-worker"))
    assert all("emptyDir" in volume for volume in session["volumes"])
    assert "affinity" not in session
    for name, deployment in apps.items():
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod(deployment)["volumes"]}
        assert claims == {"corral-data"}, name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["corral.dev/data"] == "canonical", name


def test_probes_point_at_the_apps_health_urls(base):
    web = find(base, "Deployment", "corral-web")
    (container,) = pod(web)["containers"]
    ports = {p["name"] for p in container["ports"]}
    expected = {"livenessProbe": health.healthz, "readinessProbe": health.readyz,
                "startupProbe": health.healthz}  # fmt: skip
    for probe, view in expected.items():
        get = container[probe]["httpGet"]
        assert get["port"] in ports
        assert resolve(get["path"]).func is view, probe
        assert get["path"] in health.PROBES  # answered before the host check too
    service = find(base, "Service", "corral-web")
    assert (
        service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
    )
    config = find(base, "ConfigMap", "corral-config")["data"]
    port = service["spec"]["ports"][0]["port"]
    assert config["CORRAL_URL"] == f"http://{service['metadata']['name']}:{port}"


def test_every_variable_the_manifests_set_is_a_documented_setting(example):
    code: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            code |= names_in_code(path.read_text())[0]
    documented = listed((ROOT / "docs" / "operating.md").read_text())
    names = set(find(example, "ConfigMap", "corral-config")["data"])
    names |= set(find(example, "Secret", "corral-secrets")["stringData"]) - KEDA_ONLY
    for container in containers(example):
        names |= {env["name"] for env in container.get("env", [])}
    assert not names & KEDA_ONLY
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CORRAL_SESSION_SLOTS"} <= names
    for name in sorted(names):
        assert name in PLAIN or name in code, f"{name} is read by no code"
        assert name in documented, f"{name} is not listed in docs/operating.md"


def test_every_container_runs_a_real_command_with_the_shared_settings(base):
    for container in containers(base):
        command = container["command"]
        if command[:2] == ["sh", "-c"]:  # wait until the migrations are applied
            loop = shlex.split(command[2])
            assert loop[:4] == ["until", "python", "manage.py", "migrate"]
            assert "--check" in loop
            check_command(loop[1:4])
        else:
            check_command(command)
        assert container["envFrom"] == [{"configMapRef": {"name": "corral-config"}}]
        secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert set(secrets) == {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
        assert {ref["name"] for ref in secrets.values()} == {"corral-secrets"}


def test_session_workers_have_the_time_to_finish_or_salvage_before_sigkill(base):
    config = find(base, "ConfigMap", "corral-config")["data"]
    grace = int(config["CORRAL_SHUTDOWN_GRACE_SECONDS"]) + int(config["CORRAL_KILL_GRACE_SECONDS"])
    worker = pod(find(base, "Deployment", "corral-session-worker"))
    assert worker["terminationGracePeriodSeconds"] >= grace + 15  # the salvage, the ending


def test_every_pod_can_start_bubblewrap_and_hands_agents_nothing_of_the_cluster(base):
    for name, deployment in deployments(base).items():
        spec = pod(deployment)
        assert spec["hostUsers"] is False, name  # its own user namespace
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name  # no CORRAL_WEB_PORT=tcp://…
        assert spec["shareProcessNamespace"] is True, name  # orphans reaped
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 1000
        assert context["seccompProfile"] == {"type": "Unconfined"}, name
        assert context["appArmorProfile"] == {"type": "Unconfined"}, name
        for container in spec["containers"]:
            own = container["securityContext"]
            assert own["procMount"] == "Unmasked", name
            assert own["allowPrivilegeEscalation"] is False
            assert own["capabilities"] == {"drop": ["ALL"]}
            assert "privileged" not in own
