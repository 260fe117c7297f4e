"""k8s/: the generated overlays are current, and every one renders with
kustomize into objects the Kubernetes schema accepts in strict mode."""

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from scenarios import DEFAULT_FILE, load
from scenarios.k8s import IMAGE_CAPACITY_LOCUSTFILES, MARKER, OVERLAYS_DIR, K8S_DIR, \
    render_overlays, write_overlays

SHIPPED = load(DEFAULT_FILE)
NAMES = list(render_overlays(SHIPPED))
SEARCHES = [name for name in NAMES if SHIPPED.get(name).capacity is not None]
EXPECTED_KINDS = sorted([("Deployment", "fileserver"), ("Deployment", "locust-master"),
                         ("Deployment", "locust-worker"), ("Job", "locust-run"),
                         ("Service", "fileserver"), ("Service", "locust-master")])
DRIFT = "k8s/overlays is out of date with scenarios.yaml: run python -m scenarios k8s"


def tree(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): path.read_text(encoding="utf-8")
            for path in sorted(root.rglob("*")) if path.is_file()}


# ---------------------------------------------------------------------------
# generation

def drift(committed: Path, scratch: Path) -> str:
    """Empty when ``committed`` holds exactly what the generator writes into ``scratch``."""
    write_overlays(SHIPPED, scratch)
    expected, actual = tree(scratch), tree(committed) if committed.is_dir() else {}
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(name for name in set(expected) & set(actual)
                     if expected[name] != actual[name])
    if missing or extra or changed:
        return f"{DRIFT} (missing {missing}, unexpected {extra}, changed {changed})"
    return ""


@pytest.mark.unit
def test_generated_overlays_are_up_to_date(tmp_path):
    problem = drift(OVERLAYS_DIR, tmp_path)
    assert not problem, problem


@pytest.mark.unit
def test_drift_is_detected(tmp_path):
    copy = tmp_path / "committed"
    shutil.copytree(OVERLAYS_DIR, copy)
    assert drift(copy, tmp_path / "a") == ""
    (copy / NAMES[0] / "server.yaml").write_text("edited\n")
    shutil.rmtree(copy / NAMES[1])
    problem = drift(copy, tmp_path / "b")
    assert problem.startswith(DRIFT)
    assert f"{NAMES[0]}/server.yaml" in problem and f"{NAMES[1]}/kustomization.yaml" in problem


@pytest.mark.unit
def test_generation_is_deterministic():
    assert render_overlays(SHIPPED) == render_overlays(load(DEFAULT_FILE))


@pytest.mark.unit
def test_write_overlays_is_idempotent_and_prunes_only_generated_folders(tmp_path):
    # three files each, and a capacity search's worker patch
    assert write_overlays(SHIPPED, tmp_path) == (3 * len(NAMES) + len(SEARCHES), 0)
    assert write_overlays(SHIPPED, tmp_path) == (0, 0)
    (tmp_path / "gone-scenario").mkdir()
    (tmp_path / "gone-scenario" / "kustomization.yaml").write_text(MARKER + "kind: x\n")
    (tmp_path / "hand-made").mkdir()
    (tmp_path / "hand-made" / "kustomization.yaml").write_text("kind: Kustomization\n")
    (tmp_path / NAMES[0] / "server.yaml").write_text("edited by hand\n")
    (tmp_path / NAMES[0] / "old-patch.yaml").write_text("stale\n")
    assert write_overlays(SHIPPED, tmp_path) == (1, 1)
    assert not (tmp_path / "gone-scenario").exists()
    assert (tmp_path / "hand-made" / "kustomization.yaml").exists()
    assert not (tmp_path / NAMES[0] / "old-patch.yaml").exists()
    assert tree(tmp_path / NAMES[0]) == render_overlays(SHIPPED)[NAMES[0]]


@pytest.mark.unit
def test_cli_k8s_writes_into_out(tmp_path, capsys):
    from scenarios.__main__ import main
    assert main(["k8s", "--out", str(tmp_path / "overlays")]) == 0
    assert f"{len(NAMES)} overlays" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == sorted(NAMES)


# ---------------------------------------------------------------------------
# rendering and schema validation

def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("FS_REQUIRE_KUBECTL"):
            pytest.fail("kubectl is not installed and FS_REQUIRE_KUBECTL is set")
        pytest.skip("kubectl is not installed (set FS_REQUIRE_KUBECTL to make this a failure)")
    return path


def kustomize(binary: str, directory: Path) -> list[dict]:
    result = subprocess.run([binary, "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        return [{"error": result.stderr.strip()}]
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """Every overlay (and the base) rendered once: name -> objects."""
    binary = kubectl()
    targets = {name: OVERLAYS_DIR / name for name in NAMES}
    targets["base"] = K8S_DIR / "base"
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda path: kustomize(binary, path), targets.values())
        return dict(zip(targets, results))


@pytest.fixture(scope="module")
def k8s_version() -> str:
    pytest.importorskip("kubernetes_validate")
    from kubernetes_validate.utils import latest_version, major_minor
    version = major_minor(latest_version())
    assert tuple(map(int, version.split("."))) >= (1, 30), \
        f"kubernetes-validate only knows Kubernetes up to {version}; upgrade it"
    return version


def objects(rendered, name) -> list[dict]:
    docs = rendered[name]
    assert docs and "error" not in docs[0], \
        f"kubectl kustomize k8s/overlays/{name} failed: {docs[0].get('error') if docs else 'empty'}"
    return docs


def find(docs, kind, name) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(obj, name) -> dict:
    (found,) = [c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def env_of(c) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}


def schema_problems(docs: list[dict], version: str) -> list[str]:
    """Strict validation; a kind the schema does not know is a problem too
    (kubernetes-validate's own CLI only warns about those)."""
    from kubernetes_validate import validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError
    problems = []
    for doc in docs:
        label = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            validate(doc, version, strict=True)
        except ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            problems.append(f"{label}: {path}: {error.message}")
        except SchemaNotFoundError:
            problems.append(f"{label}: kind {doc['apiVersion']} {doc['kind']} "
                            f"is unknown to the Kubernetes {version} schema")
    return problems


@pytest.mark.unit
def test_schema_check_fails_on_bad_fields_and_unknown_kinds(k8s_version):
    good = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 1}]}}
    assert schema_problems([good], k8s_version) == []
    typo = {**good, "spec": {"ports": [{"port": 1}], "selectr": {}}}
    wrong_type = {**good, "spec": {"ports": [{"port": "one"}]}}
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    problems = schema_problems([typo, wrong_type, unknown], k8s_version)
    assert len(problems) == 3
    assert "selectr" in problems[0]
    assert problems[1].startswith("Service/s: spec.ports.0.port:")
    assert "Widget is unknown to the Kubernetes" in problems[2]


@pytest.mark.integration
@pytest.mark.parametrize("name", ["base", *NAMES])
def test_renders_and_validates_strictly(rendered, k8s_version, name):
    docs = objects(rendered, name)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == EXPECTED_KINDS
    for doc in docs:
        assert "namespace" not in doc["metadata"], \
            f"{doc['kind']}/{doc['metadata']['name']}: the manifests set no namespace"
    problems = schema_problems(docs, k8s_version)
    assert not problems, f"{name} against Kubernetes {k8s_version}:\n" + "\n".join(problems)


@pytest.mark.integration
def test_base_hardening_and_probes(rendered):
    docs = objects(rendered, "base")
    server_deployment = find(docs, "Deployment", "fileserver")
    server = container(server_deployment, "server")
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {p["containerPort"] for p in server["ports"]} == {6665, 9665}
    assert {p["port"] for p in find(docs, "Service", "fileserver")["spec"]["ports"]} == \
        {6665, 9665}
    assert {p["port"] for p in find(docs, "Service", "locust-master")["spec"]["ports"]} == \
        {8089, 5557}
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in server_deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/data"]] and "emptyDir" in volumes[mounts["/tmp"]]
    for doc in docs:
        if doc["kind"] == "Service":
            continue
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "fileserver-lab"
        spec = doc["spec"]["template"]["spec"]
        for c in spec["containers"] + spec.get("initContainers", []):
            context = c["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["requests"] and c["resources"]["limits"]
    worker = container(find(docs, "Deployment", "locust-worker"), "locust")
    assert worker["resources"]["requests"]["cpu"] in ("1", 1)
    job = find(docs, "Job", "locust-run")
    assert job["spec"]["suspend"] is True and job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    locust = container(job, "locust")
    assert "/results" in {m["mountPath"] for m in locust["volumeMounts"]}
    assert {"--csv", "--html", "--headless", "--master"} <= set(locust["args"])
    # no -f anywhere: it would override LOCUST_LOCUSTFILE, which capacity overlays set
    assert 'locust "$@"' in locust["command"][2]
    master = container(find(docs, "Deployment", "locust-master"), "locust")
    for c in (locust, worker, master):
        words = c["args"] + " ".join(c.get("command", [])).split()
        assert "-f" not in words and "--locustfile" not in words


@pytest.mark.integration
@pytest.mark.parametrize("name", NAMES)
def test_overlay_carries_the_scenario(rendered, name):
    scenario = SHIPPED.get(name)
    docs = objects(rendered, name)
    server_deployment = find(docs, "Deployment", "fileserver")
    server = container(server_deployment, "server")
    env = env_of(server)
    assert (env["FS_MODE"], env["FS_POOL"]) == (scenario.mode, str(scenario.pool))
    assert env["FS_STORAGE_DIR"] == "/data", "the base's other settings survive the patch"
    wanted = {"cpu": scenario.server_cpu_quantity, "memory": scenario.server_memory}
    assert server["resources"] == {"requests": wanted, "limits": wanted}
    assert find(docs, "Deployment", "locust-worker")["spec"]["replicas"] == \
        scenario.locust_workers
    assert find(docs, "Deployment", "locust-master")["spec"]["replicas"] == 0
    job = find(docs, "Job", "locust-run")
    assert job["spec"]["suspend"] is False
    assert job["spec"]["activeDeadlineSeconds"] > scenario.duration
    job_env = env_of(container(job, "locust"))
    locustfile = job_env.pop("LOCUST_LOCUSTFILE", None)
    assert {k: v for k, v in job_env.items() if k.startswith("LOCUST_")} == \
        dict(scenario.locust_env())
    assert job_env["LOCUST_EXPECT_WORKERS"] == str(scenario.locust_workers)
    assert job_env["LOCUST_RUN_TIME"] == f"{scenario.duration}s"
    # a capacity search: the Job (with the LOCUST_CAPACITY_* values) and the workers load
    # the shape; a fixed load keeps the image's default, the users alone
    worker_env = env_of(container(find(docs, "Deployment", "locust-worker"), "locust"))
    if scenario.capacity is not None:
        assert locustfile == worker_env["LOCUST_LOCUSTFILE"] == IMAGE_CAPACITY_LOCUSTFILES
        assert job_env["LOCUST_CAPACITY_STEP_SECONDS"] == str(scenario.capacity.step_seconds)
    else:
        assert locustfile is None and "LOCUST_LOCUSTFILE" not in worker_env
        assert not any(name.startswith("LOCUST_CAPACITY_") for name in job_env)
    for doc in docs:
        if doc["kind"] != "Service":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert labels["fileserver-lab/scenario"] == name
