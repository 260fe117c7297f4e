"""Run the pod specs of rendered Kubernetes manifests in Docker, as a kubelet would.

No cluster runs here, so each container of a pod template becomes a ``docker run``
that does what the spec says: image (never pulled), command/args (entrypoint/CMD
rules and ``$(VAR)`` expansion as Kubernetes does them), env, runAsUser/runAsGroup,
fsGroup, read-only root, capabilities, no privilege escalation, seccomp, emptyDirs
as tmpfs volumes of their size limit, CPU/memory limits and requests, the grace
period.  The Services that select a pod become network aliases on one
user-defined network, and probes are called from the host on the container's IP,
as the kubelet calls them on the pod's IP.

A field this module does not translate is an error (``PodSpecError``), never
silently left out: what runs is what the manifest says, or the check fails.
Not modelled: scheduling, restarts, Service load balancing (one pod per alias),
pods of several regular containers.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from server.launcher import http_get, wait_until

# What Docker can be told; anything else in a manifest is refused.
POD_KEYS = {"containers", "initContainers", "volumes", "securityContext", "restartPolicy",
            "automountServiceAccountToken", "terminationGracePeriodSeconds"}
CONTAINER_KEYS = {"name", "image", "imagePullPolicy", "command", "args", "env", "ports",
                  "livenessProbe", "readinessProbe", "startupProbe", "resources",
                  "securityContext", "volumeMounts", "workingDir"}
POD_SECURITY_KEYS = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup",
                     "supplementalGroups", "seccompProfile"}
CONTAINER_SECURITY_KEYS = {"runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile",
                           "readOnlyRootFilesystem", "allowPrivilegeEscalation",
                           "capabilities"}
DEFAULT_GRACE_SECONDS = 30          # Kubernetes' terminationGracePeriodSeconds
MEMORY_UNITS = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40,
                "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12}
_VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class PodSpecError(Exception):
    """The manifest asks for something this Docker stand-in does not translate,
    or something a kubelet would refuse."""


def render(kubectl: str, directory: Path) -> list[dict]:
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise PodSpecError(f"kubectl kustomize {directory}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass
class Workload:
    """One pod template: of a Deployment (``replicas`` pods) or a Job (one pod)."""
    kind: str
    name: str
    replicas: int
    labels: dict
    spec: dict

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"


def workloads(docs: list[dict]) -> dict[str, Workload]:
    """"Kind/name" -> Workload, for every Deployment and Job."""
    found = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        template = doc["spec"]["template"]
        replicas = doc["spec"].get("replicas", 1) if doc["kind"] == "Deployment" else 1
        workload = Workload(doc["kind"], doc["metadata"]["name"], replicas,
                            template["metadata"].get("labels", {}), template["spec"])
        found[workload.label] = workload
    return found


def cpu_quantity(text) -> float:
    text = str(text)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory_bytes(text) -> int:
    text = str(text)
    for suffix, factor in MEMORY_UNITS.items():
        if text.endswith(suffix):
            return int(float(text[:-len(suffix)]) * factor)
    return int(text)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, undefined
    references stay as written, ``$$`` is a literal ``$``."""
    def replace(match):
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _VARIABLE.sub(replace, text)


def _refuse_unknown(where: str, keys, allowed) -> None:
    unknown = sorted(set(keys) - allowed)
    if unknown:
        raise PodSpecError(f"{where}: {', '.join(unknown)} not translated to Docker")


def container_env(container: dict, overrides: dict[str, str] | None = None) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" not in entry:
            raise PodSpecError(f"container {container['name']}: env {entry['name']} has no "
                               "literal value (valueFrom is not translated)")
        env[entry["name"]] = expand(str(entry["value"]), env)
    env.update(overrides or {})
    return env


def named_ports(spec: dict) -> dict[str, int]:
    return {port["name"]: port["containerPort"]
            for container in spec["containers"] for port in container.get("ports", [])
            if "name" in port}


def resolve_port(spec: dict, port) -> int:
    if isinstance(port, int):
        return port
    ports = named_ports(spec)
    if port not in ports:
        raise PodSpecError(f"port {port!r} is not a named port of the pod ({sorted(ports)})")
    return ports[port]


def service_aliases(docs: list[dict], workload: Workload) -> list[str]:
    """The Services selecting this pod: their names become network aliases.  A
    Service whose targetPort differs from its port cannot be an alias (Docker
    does not remap ports), and a named targetPort must be a port of the pod."""
    aliases = []
    for doc in docs:
        if doc["kind"] != "Service":
            continue
        selector = doc["spec"].get("selector", {})
        if not selector or any(workload.labels.get(k) != v for k, v in selector.items()):
            continue
        for port in doc["spec"]["ports"]:
            target = resolve_port(workload.spec, port.get("targetPort", port["port"]))
            if target != port["port"]:
                raise PodSpecError(f"Service {doc['metadata']['name']} maps port "
                                   f"{port['port']} to {target}: not an alias in Docker")
        aliases.append(doc["metadata"]["name"])
    return aliases


def _security(pod: dict, container: dict) -> dict:
    pod_context = pod.get("securityContext", {})
    own = container.get("securityContext", {})
    _refuse_unknown("pod securityContext", pod_context, POD_SECURITY_KEYS)
    _refuse_unknown(f"container {container['name']} securityContext", own,
                    CONTAINER_SECURITY_KEYS)
    merged = {k: v for k, v in pod_context.items() if k in CONTAINER_SECURITY_KEYS}
    merged.update(own)
    return merged


def image_config(image: str) -> dict:
    result = subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise PodSpecError(f"image {image} is not here (nothing is pulled): "
                           f"{result.stderr.strip()}")
    return json.loads(result.stdout)[0]["Config"]


def docker_run_args(pod: dict, container: dict, image: dict, volumes: dict[str, str],
                    env_overrides: dict[str, str] | None = None) -> list[str]:
    """The ``docker run`` options, image and arguments of one container spec
    (without name, network and aliases).  ``image`` is the image's Config
    (docker image inspect); ``volumes`` maps the pod's volume names to Docker
    volumes."""
    name = container["name"]
    _refuse_unknown(f"container {name}", container, CONTAINER_KEYS)
    if container.get("imagePullPolicy", "IfNotPresent") == "Always":
        raise PodSpecError(f"container {name}: imagePullPolicy Always needs a registry")
    args = ["--pull", "never", "--no-healthcheck",      # Kubernetes ignores HEALTHCHECK
            "--stop-timeout", str(pod.get("terminationGracePeriodSeconds",
                                          DEFAULT_GRACE_SECONDS))]
    security = _security(pod, container)
    uid, gid = security.get("runAsUser"), security.get("runAsGroup")
    if uid is None and gid is not None:
        raise PodSpecError(f"container {name}: runAsGroup without runAsUser")
    if uid is not None:
        args += ["--user", f"{uid}" if gid is None else f"{uid}:{gid}"]
    if security.get("runAsNonRoot"):
        user = str(uid) if uid is not None else (image.get("User") or "0").split(":")[0]
        if not user.isdigit() or int(user) == 0:
            raise PodSpecError(f"container {name}: runAsNonRoot, but it would run as "
                               f"user {user!r} (the kubelet refuses non-numeric users too)")
    pod_context = pod.get("securityContext", {})
    for group in [pod_context.get("fsGroup"), *pod_context.get("supplementalGroups", [])]:
        if group is not None:
            args += ["--group-add", str(group)]
    seccomp = security.get("seccompProfile", {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":       # Docker's default profile stands in for it
        raise PodSpecError(f"container {name}: seccompProfile {seccomp} not translated")
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    capabilities = security.get("capabilities", {})
    args += [arg for cap in capabilities.get("drop", []) for arg in ("--cap-drop", cap)]
    args += [arg for cap in capabilities.get("add", []) for arg in ("--cap-add", cap)]

    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    if "cpu" in limits:
        args += ["--cpus", str(cpu_quantity(limits["cpu"]))]
    if "memory" in limits:
        args += ["--memory", str(memory_bytes(limits["memory"]))]
    cpu_request = requests.get("cpu", limits.get("cpu"))
    if cpu_request is not None:                         # the kubelet's cpu.shares
        args += ["--cpu-shares", str(max(2, int(cpu_quantity(cpu_request) * 1024)))]
    if "memory" in requests:
        args += ["--memory-reservation", str(memory_bytes(requests["memory"]))]

    mounted = set()
    for mount in container.get("volumeMounts", []):
        _refuse_unknown(f"container {name} volumeMount", mount, {"name", "mountPath",
                                                                 "readOnly"})
        if mount["name"] not in volumes:
            raise PodSpecError(f"container {name} mounts {mount['name']}, not a pod volume")
        suffix = ":ro" if mount.get("readOnly") else ""
        args += ["-v", f"{volumes[mount['name']]}:{mount['mountPath']}{suffix}"]
        mounted.add(mount["mountPath"])
    # Kubernetes ignores the image's VOLUME: such a path gets no volume there, but an
    # anonymous writable one in Docker, so it must be mounted by the spec.
    unmounted = sorted(set(image.get("Volumes") or {}) - mounted)
    if unmounted:
        raise PodSpecError(f"container {name}: the image's VOLUME {unmounted} gets no volume "
                           "in Kubernetes; mount an emptyDir there (docker would hide this)")

    env = container_env(container, env_overrides)
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    if "workingDir" in container:
        args += ["--workdir", container["workingDir"]]
    command = [expand(str(part), env) for part in container.get("command", [])]
    arguments = [expand(str(part), env) for part in container.get("args", [])]
    if command:             # command replaces ENTRYPOINT and drops the image's CMD
        return [*args, "--entrypoint", command[0], container["image"], *command[1:],
                *arguments]
    if "args" in container:  # args replace CMD
        return [*args, container["image"], *arguments]
    return [*args, container["image"]]


def docker(*args: str, timeout: float = 120, check: bool = True,
           **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, timeout=timeout,
                            **({"text": True} | kwargs))
    if check and result.returncode != 0:
        stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
        raise PodSpecError(f"docker {' '.join(args[:3])} ...: {stderr.strip()}")
    return result


class PodLab:
    """Containers, volumes and one network, all named ``<prefix>-...``; ``close``
    removes exactly those.  Use as a context manager."""

    def __init__(self, docs: list[dict], prefix: str = "podspec"):
        self.docs = docs
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.network = f"{self.prefix}-net"
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.specs: dict[str, dict] = {}            # container name -> container spec
        self.pods: dict[str, dict] = {}             # container name -> pod spec
        docker("network", "create", self.network)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        for name in reversed(self.containers):
            docker("rm", "-f", "-v", name, check=False)
        for volume in self.volumes:
            docker("volume", "rm", "-f", volume, check=False)
        docker("network", "rm", self.network, check=False)

    def _volumes(self, pod_name: str, spec: dict) -> dict[str, str]:
        """Each emptyDir as a tmpfs Docker volume of its size limit, shared by the
        pod's containers; with fsGroup, group-owned and setgid as the kubelet does."""
        created = {}
        fs_group = spec.get("securityContext", {}).get("fsGroup")
        for volume in spec.get("volumes", []):
            if set(volume) != {"name", "emptyDir"}:
                raise PodSpecError(f"volume {volume['name']}: only emptyDir is translated")
            options = ["mode=2777" if fs_group is not None else "mode=0777"]
            if fs_group is not None:
                options.append(f"gid={fs_group}")
            if "sizeLimit" in (volume["emptyDir"] or {}):
                options.append(f"size={memory_bytes(volume['emptyDir']['sizeLimit'])}")
            name = f"{pod_name}-{volume['name']}"
            docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs",
                   "--opt", "device=tmpfs", "--opt", "o=" + ",".join(options), name)
            self.volumes.append(name)
            created[volume["name"]] = name
        return created

    def _run(self, name: str, pod: dict, container: dict, volumes: dict[str, str],
             aliases: list[str], env: dict[str, str] | None) -> str:
        args = docker_run_args(pod, container, image_config(container["image"]), volumes, env)
        alias_args = [arg for alias in aliases for arg in ("--network-alias", alias)]
        self.containers.append(name)
        docker("run", "-d", "--name", name, "--hostname", name, "--network", self.network,
               *alias_args, *args)
        self.specs[name], self.pods[name] = container, pod
        return name

    def start(self, workload: Workload, index: int = 0, env: dict[str, str] | None = None,
              init_timeout: float = 120) -> str:
        """Start one pod of ``workload``: its init containers one after another, each
        to exit status 0, then its container.  ``env`` overrides variables of the
        regular container.  Returns that container's name."""
        spec = workload.spec
        _refuse_unknown(f"{workload.label} pod spec", spec, POD_KEYS)
        if len(spec["containers"]) != 1:
            raise PodSpecError(f"{workload.label}: pods of several containers not translated")
        pod_name = f"{self.prefix}-{workload.name}-{index}"
        aliases = service_aliases(self.docs, workload)
        volumes = self._volumes(pod_name, spec)
        for init in spec.get("initContainers", []):
            name = self._run(f"{pod_name}-{init['name']}", spec, init, volumes, [], None)
            status = self.wait_exit(name, init_timeout)
            if status != 0:
                raise PodSpecError(f"{workload.label}: init container {init['name']} exited "
                                   f"{status}:\n{self.logs(name)[-2000:]}")
        return self._run(pod_name, spec, spec["containers"][0], volumes, aliases, env)

    # ------------------------------------------------------------------ state

    def state(self, name: str) -> dict:
        return json.loads(docker("inspect", name).stdout)[0]

    def ip(self, name: str) -> str:
        return self.state(name)["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def remove(self, name: str) -> None:
        docker("rm", "-f", name)

    def stop(self, name: str) -> float:
        """SIGTERM, then SIGKILL after the pod's grace period (``--stop-timeout``), as
        a pod deletion does; returns the seconds it took."""
        started = time.monotonic()
        docker("stop", name, timeout=DEFAULT_GRACE_SECONDS + 600)
        return time.monotonic() - started

    def logs(self, name: str) -> str:
        result = docker("logs", name, check=False)
        return result.stdout + result.stderr

    def wait_exit(self, name: str, timeout: float) -> int | None:
        """The container's exit status, or None if it still runs after ``timeout`` s."""
        if not wait_until(lambda: not self.state(name)["State"]["Running"], timeout,
                          interval=0.5):
            return None
        return self.state(name)["State"]["ExitCode"]

    def read_file(self, name: str, path: str) -> str | None:
        """What ``kubectl exec POD -- cat PATH`` prints, None when it fails."""
        result = docker("exec", name, "cat", path, check=False)
        return result.stdout if result.returncode == 0 else None

    def copy_out(self, name: str, path: str, destination: Path) -> list[Path]:
        """``kubectl cp POD:PATH DEST`` as kubectl does it: ``tar cf - PATH`` run in
        the container (so the image must have tar), unpacked here."""
        result = docker("exec", name, "tar", "cf", "-", path, text=False, check=False)
        if result.returncode != 0:
            raise PodSpecError(f"tar cf - {path} in {name} failed (kubectl cp needs tar "
                               f"in the image): {result.stderr.decode().strip()}")
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as archive:
            archive.extractall(destination, filter="data")
        return sorted(p for p in (destination / path.lstrip("/")).rglob("*") if p.is_file())

    # ------------------------------------------------------------------ probes

    def probe(self, name: str, probe: dict) -> tuple[bool, str]:
        """One call of a probe spec as the kubelet makes it: (passed, what happened)."""
        pod, timeout = self.pods[name], probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            get = probe["httpGet"]
            _refuse_unknown("httpGet probe", get, {"path", "port", "scheme"})
            if get.get("scheme", "HTTP") != "HTTP":
                raise PodSpecError("httpGet probe: only scheme HTTP is translated")
            url = f"http://{self.ip(name)}:{resolve_port(pod, get['port'])}{get.get('path', '/')}"
            try:
                status = http_get(url, timeout)[0]
            except http.client.HTTPException:      # an answer that is not HTTP
                status = 0
            return 200 <= status < 400, f"GET {url}: {status or 'no answer'}"
        if "tcpSocket" in probe:
            address = (self.ip(name), resolve_port(pod, probe["tcpSocket"]["port"]))
            try:
                socket.create_connection(address, timeout).close()
                return True, f"connect {address}: ok"
            except OSError as error:
                return False, f"connect {address}: {error}"
        if "exec" in probe:
            command = probe["exec"]["command"]
            result = docker("exec", name, *command, check=False, timeout=timeout + 30)
            return result.returncode == 0, f"exec {command}: exit {result.returncode}"
        raise PodSpecError(f"probe {sorted(probe)}: no httpGet, tcpSocket or exec")

    def wait_probe(self, name: str, kind: str, within: float) -> str:
        """Call the container's ``kind`` probe (readinessProbe, ...) every
        periodSeconds until it passes; PodSpecError if it never does ``within`` s."""
        probe = self.specs[name].get(kind)
        if probe is None:
            raise PodSpecError(f"{name} has no {kind}")
        deadline = time.monotonic() + within
        while True:
            passed, detail = self.probe(name, probe)
            if passed:
                return detail
            if time.monotonic() > deadline or not self.state(name)["State"]["Running"]:
                raise PodSpecError(f"{name}: {kind} never passed ({detail}); log:\n"
                                   + self.logs(name)[-3000:])
            time.sleep(min(probe.get("periodSeconds", 10), 1))
