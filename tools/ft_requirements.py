"""Print what ``make venv-ft`` installs, one requirement a line, from pyproject.toml:
the project's dependencies and the test tools of its dev extra, without the
packages that only the lab imports (PyYAML: it has no free-threaded wheel, and
neither the server nor the client imports it)."""

import re
import tomllib
from pathlib import Path

LAB_ONLY = {"pyyaml"}
TEST_TOOLS = {"pytest", "pytest-timeout", "hypothesis"}


def name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [r for r in project["dependencies"] if name(r) not in LAB_ONLY]
    tools = [r for r in project["optional-dependencies"]["dev"] if name(r) in TEST_TOOLS]
    missing = TEST_TOOLS - {name(r) for r in tools}
    if missing:
        raise SystemExit(f"{pyproject}: the dev extra does not name {', '.join(sorted(missing))}")
    return wanted + tools


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(requirements(root / "pyproject.toml")))
