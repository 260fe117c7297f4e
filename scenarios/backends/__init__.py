"""Where a scenario runs: ``local`` processes, docker ``compose``, or ``k8s``.

Every backend starts the server with the scenario's mode, pool and limits,
samples its ``/stats`` into ``server-stats.jsonl``, runs a headless Locust
master with the scenario's LOCUST_* settings and its Locust workers, and leaves
Locust's CSV (prefix ``locust``) and HTML report in the scenario folder.
"""

from scenarios.backends.base import Backend, BackendError, Outcome
from scenarios.backends.compose import ComposeBackend
from scenarios.backends.kubernetes import KubernetesBackend
from scenarios.backends.local import LocalBackend

__all__ = ["Backend", "BackendError", "ComposeBackend", "KubernetesBackend",
           "LocalBackend", "Outcome"]
