"""Load-lab scenarios: ``scenarios.yaml`` and the Kubernetes overlays made from it.

    python -m scenarios list [FILE]       the scenarios as a table
    python -m scenarios validate [FILE]   check a scenario file
    python -m scenarios k8s [FILE]        regenerate k8s/overlays/ from it
"""

from scenarios.schema import (DEFAULT_FILE, Scenario, ScenarioError, ScenarioFile, Weights,
                              load, parse)

__all__ = ["DEFAULT_FILE", "Scenario", "ScenarioError", "ScenarioFile", "Weights", "load",
           "parse"]
