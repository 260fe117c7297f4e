"""The Kubernetes pod specs executed: every container of one rendered overlay run in
Docker as the spec says (tests/deploy/podspec.py), its probes called, the Job's
headless run copied out as ``kubectl cp`` copies it.

No cluster runs here; schema validation (tests/scenarios/test_k8s.py) cannot tell
whether a path is writable under the read-only root, an argument is right or a probe
hits the right port: this runs them.  Needs Docker and kubectl.
"""

import csv
import json

import pytest

from scenarios.k8s import OVERLAYS_DIR
from server.launcher import http_get, wait_until
from tests.deploy.podspec import (PodLab, PodSpecError, Workload, docker_run_args, memory_bytes,
                                  render, service_aliases, workloads)
from tests.deploy.test_compose import built  # noqa: F401  (the images, built offline)
from tests.scenarios.test_k8s import kubectl

OVERLAY = "thread-pool5"
RUN_TIME = "15s"            # the Job's LOCUST_RUN_TIME: the one value changed, to stay short
WORKLOADS = ["Deployment/fileserver", "Deployment/locust-master", "Deployment/locust-worker",
             "Job/locust-run"]


def process_status(lab: PodLab, name: str) -> dict[str, str]:
    """/proc/1/status of the container: what the kernel actually applied."""
    text = lab.read_file(name, "/proc/1/status")
    assert text is not None, f"cannot read /proc/1/status in {name}"
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def assert_hardened(lab: PodLab, name: str) -> None:
    """The running process has the spec's user and group, no capability, no
    privilege escalation, a read-only root, and the limits."""
    container, pod = lab.specs[name], lab.pods[name]
    security = {**pod["securityContext"], **container["securityContext"]}
    status = process_status(lab, name)
    assert status["Uid"].split()[0] == str(security["runAsUser"]), (name, status["Uid"])
    assert status["Gid"].split()[0] == str(security["runAsGroup"]), (name, status["Gid"])
    assert str(pod["securityContext"]["fsGroup"]) in status["Groups"].split()
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, (name, status)
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
    host = lab.state(name)["HostConfig"]
    limits = container["resources"]["limits"]
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == memory_bytes(limits["memory"])
    assert host["NanoCpus"] == int(float(limits["cpu"]) * 1e9)


def worker_count(lab: PodLab, master: str) -> int:
    status, body = http_get(f"http://{lab.ip(master)}:8089/worker-count", 2)
    return json.loads(body)["worker_count"] if status == 200 else -1


@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.slow
def test_the_overlay_pod_specs_run_in_docker(built, tmp_path):  # noqa: F811
    docs = render(kubectl(), OVERLAYS_DIR / OVERLAY)
    pods = workloads(docs)
    assert sorted(pods) == WORKLOADS
    workers = pods["Deployment/locust-worker"]
    assert pods["Deployment/locust-master"].replicas == 0 and workers.replicas == 2
    with PodLab(docs) as lab:
        server = lab.start(pods["Deployment/fileserver"])
        lab.wait_probe(server, "readinessProbe", within=60)
        lab.wait_probe(server, "livenessProbe", within=5)
        assert_hardened(lab, server)
        # a probe on the wrong port fails: the protocol port answers no HTTP
        assert not lab.probe(server, {"httpGet": {"path": "/readyz", "port": "fileserver"},
                                      "timeoutSeconds": 2})[0]

        # The interactive master (the base's; a scenario overlay scales it to 0, so it
        # runs here first, alone behind the locust-master Service): its probe, and the
        # workers find it by the Service name.
        master = lab.start(pods["Deployment/locust-master"])
        interactive = [lab.start(workers, index) for index in range(workers.replicas)]
        lab.wait_probe(master, "readinessProbe", within=60)
        assert wait_until(lambda: worker_count(lab, master) == workers.replicas, 60,
                          interval=0.5), lab.logs(master)[-3000:]
        for name in [master, *interactive]:
            assert_hardened(lab, name)
            lab.remove(name)

        # The scenario: the Job (its init container waits for the server's /readyz),
        # now the only pod behind locust-master, and the workers of the overlay.
        job = lab.start(pods["Job/locust-run"], env={"LOCUST_RUN_TIME": RUN_TIME})
        for index in range(workers.replicas):
            lab.start(workers, workers.replicas + index)
        assert_hardened(lab, job)
        # the script writes /results/exit-status, then logs this line
        assert wait_until(lambda: "locust exited with status" in lab.logs(job), 120,
                          interval=1), lab.logs(job)[-4000:]
        assert lab.read_file(job, "/results/exit-status") == "0\n", lab.logs(job)[-4000:]
        files = {path.name: path for path in lab.copy_out(job, "/results", tmp_path)}
        assert {"exit-status", "locust_stats.csv", "locust_stats_history.csv",
                "report.html"} <= set(files), sorted(files)
        with open(files["locust_stats.csv"], newline="") as f:
            stats = {row["Name"]: row for row in csv.DictReader(f)}
        total = stats.pop("Aggregated")
        assert int(total["Request Count"]) > 100 and total["Failure Count"] == "0", total
        assert {row["Type"] for row in stats.values()} == {"LIST", "GET", "UPLOAD", "DELETE"}

        # SIGTERM (the copier done) ends the Job's wait at once, with Locust's status
        assert lab.stop(job) < 5
        assert lab.wait_exit(job, 5) == 0
        # the server is still live after the load, and drains on SIGTERM: exit 0
        lab.wait_probe(server, "livenessProbe", within=5)
        assert lab.stop(server) < lab.pods[server]["terminationGracePeriodSeconds"]
        assert lab.wait_exit(server, 5) == 0, lab.logs(server)[-3000:]


# ---------------------------------------------------------------------------
# the translation itself: a manifest that cannot run as written is an error

POD = {"securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                           "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
       "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "64Mi"}}]}
IMAGE = {"User": "10001:10001", "Volumes": {"/data": {}}}


def container(**fields) -> dict:
    return {"name": "c", "image": "img", "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "securityContext": {"readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}},
            **fields}


@pytest.mark.unit
def test_security_resources_and_volumes_become_docker_options():
    args = docker_run_args(POD, container(resources={"requests": {"cpu": "500m"},
                                                     "limits": {"cpu": "1", "memory": "1Gi"}}),
                           IMAGE, {"data": "vol-data"})
    text = " ".join(args)
    for option in ["--user 10001:10001", "--group-add 10001", "--read-only",
                   "--security-opt no-new-privileges", "--cap-drop ALL", "--cpus 1.0",
                   f"--memory {2 ** 30}", "--cpu-shares 512", "-v vol-data:/data",
                   "--stop-timeout 30", "--pull never", "--no-healthcheck"]:
        assert option in text, option
    assert args[-1] == "img"


@pytest.mark.unit
def test_command_and_args_follow_the_kubernetes_rules():
    env = [{"name": "PORT", "value": "6665"}, {"name": "URL", "value": "http://s:$(PORT)"}]
    only_args = docker_run_args(POD, container(args=["--port", "$(PORT)"], env=env), IMAGE,
                                {"data": "v"})
    assert only_args[-3:] == ["img", "--port", "6665"]      # the image's ENTRYPOINT stays
    assert "URL=http://s:6665" in only_args
    both = docker_run_args(POD, container(command=["/bin/sh", "-c", "echo $$HOME $(NOPE)"],
                                          args=["x"]), IMAGE, {"data": "v"})
    # command replaces the ENTRYPOINT (and drops CMD); $$ is a literal $, unknown stays
    assert both[-6:] == ["--entrypoint", "/bin/sh", "img", "-c", "echo $HOME $(NOPE)", "x"]


@pytest.mark.unit
@pytest.mark.parametrize("pod, spec, image, message", [
    (POD, container(lifecycle={}), IMAGE, "lifecycle not translated"),
    (POD, container(env=[{"name": "A", "valueFrom": {}}]), IMAGE, "valueFrom"),
    (POD, container(volumeMounts=[]), IMAGE, "the image's VOLUME ['/data']"),
    ({**POD, "securityContext": {"runAsNonRoot": True}}, container(),
     {"User": "", "Volumes": {"/data": {}}}, "runAsNonRoot, but it would run as user '0'"),
    (POD, container(imagePullPolicy="Always"), IMAGE, "needs a registry"),
])
def test_what_cannot_run_as_written_is_refused(pod, spec, image, message):
    with pytest.raises(PodSpecError) as error:
        docker_run_args(pod, spec, image, {"data": "v"})
    assert message in str(error.value)


@pytest.mark.unit
def test_services_become_aliases_only_where_docker_can_stand_in():
    pod = Workload("Deployment", "s", 1, {"app": "s"},
                   {"containers": [{"name": "c", "ports": [{"name": "web",
                                                            "containerPort": 8080}]}]})

    def service(target):
        return {"kind": "Service", "metadata": {"name": "svc"},
                "spec": {"selector": {"app": "s"}, "ports": [{"port": 8080,
                                                              "targetPort": target}]}}
    other = {"kind": "Service", "metadata": {"name": "other"},
             "spec": {"selector": {"app": "x"}, "ports": [{"port": 1}]}}
    assert service_aliases([service("web"), other], pod) == ["svc"]
    with pytest.raises(PodSpecError, match="'webs' is not a named port"):
        service_aliases([service("webs")], pod)
    with pytest.raises(PodSpecError, match="maps port 8080 to 9090"):
        service_aliases([service(9090)], pod)
