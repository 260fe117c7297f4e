"""Load-lab scenarios: ``scenarios.yaml`` and the Kubernetes overlays made from it.

    python -m scenarios list [FILE]       the scenarios as a table
    python -m scenarios validate [FILE]   check a scenario file
    python -m scenarios k8s [FILE]        regenerate k8s/overlays/ from it (--check: compare)
    python -m scenarios run NAME... | --all [--backend local|compose|k8s]
                                          run them into results/<timestamp>/
    python -m scenarios report [DIR]      charts, report.html, report.md for a results folder

Modules: ``schema`` (the file), ``k8s`` (overlays), ``runner`` (the run loop and
progress), ``backends`` (where a scenario runs), ``sampler`` (the server's /stats
during a run), ``results`` (summary rows), ``limits`` (local cgroups), ``generator``
(Locust's CPU: was the load generator saturated?), ``placement`` (local CPU pinning:
``run --server-cpuset 0 --locust-cpuset 1``), ``report``.
"""

from scenarios.schema import (DEFAULT_FILE, Scenario, ScenarioError, ScenarioFile, Weights,
                              load, parse)

__all__ = ["DEFAULT_FILE", "Scenario", "ScenarioError", "ScenarioFile", "Weights", "load",
           "parse"]
