"""The scenario file: load ``scenarios.yaml`` into frozen dataclasses, strictly.

A scenario file has three top-level keys, all optional except that it must
define at least one scenario:

``defaults``
    values every scenario starts from (any scenario key but ``name``).
``scenarios``
    a list of named scenarios; each mapping overrides the defaults.
``matrix``
    a mapping, or a list of mappings, expanded into one scenario per
    combination: every key whose value is a list (for ``file_sizes``: a list
    of lists) varies, the other keys are fixed, and ``name`` is a
    ``str.format`` template over the varying keys, e.g.
    ``{name: "{mode}-pool{pool}", mode: [thread, process], pool: [1, 5]}``.
    Combinations are produced in key order, the last key varying fastest.

``python`` picks the server's interpreter for the local backend: ``default`` (the
one running the lab), ``freethreaded`` (``.venv-ft/bin/python``, made by ``make
venv-ft``) or a path to an interpreter (relative paths from the repository root);
compose and Kubernetes run ``freethreaded`` as the server-ft image, and refuse a path.
The file is checked here; whether the interpreter exists is checked by the backend
before anything starts (``scenarios.backends.local.resolve_python``).

``weights`` merges key by key: a scenario that sets only ``upload`` keeps the
other weights of the defaults (or of ``client.workload.DEFAULT_WEIGHTS``, the
Locust users' own defaults).

Every problem raises :class:`ScenarioError` with one line naming the scenario,
the key and the bad value, e.g.
``scenario 'thread-pool5': key 'pool': 0 is not between 1 and 1024``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import wire
from client.capacity import CAPACITY_DEFAULTS, capacity_ramp_seconds
from client.workload import DEFAULT_WEIGHTS, SIZE_UNITS, size_label
from server.config import MAX_POOL, MIN_POOL, MODES

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "scenarios.yaml"

USERS_MAX = 100_000
WORKERS_MIN, WORKERS_MAX = 1, 100
CPUS_MIN, CPUS_MAX = 0.05, 64.0
MEMORY_MIN = 32 * 1024 ** 2            # 32Mi: less and Python itself does not start
DURATION_MAX = 24 * 3600
SIZE_MAX = wire.DEFAULT_MAX_UPLOAD_BYTES    # the server's default --max-upload-bytes
WEIGHT_KEYS = tuple(DEFAULT_WEIGHTS)

MEMORY_UNITS = {"": 1, "k": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4,
                "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 40                          # leaves room in Kubernetes names and labels
SIZE_RE = re.compile(rf"^([0-9]+)({'|'.join(SIZE_UNITS)})$")
MEMORY_RE = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
DURATION_RE = re.compile(r"^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")
WAIT_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
WAIT_RE = re.compile(rf"^({WAIT_NUMBER})(?:-({WAIT_NUMBER}))?$")

TOP_LEVEL_KEYS = ("defaults", "scenarios", "matrix")
SCENARIO_KEYS = ("name", "description", "mode", "pool", "python", "server_cpus", "server_memory",
                 "users", "spawn_rate", "duration", "locust_workers", "weights",
                 "file_sizes", "upload_size", "wait", "capacity")
REQUIRED_KEYS = tuple(k for k in SCENARIO_KEYS if k not in ("description", "weights",
                                                           "capacity", "python"))
# the ``python`` key: the lab's own interpreter, the free-threaded venv, or a path
PYTHON_DEFAULT, PYTHON_FREETHREADED = "default", "freethreaded"
PYTHON_NAMED = (PYTHON_DEFAULT, PYTHON_FREETHREADED)
# the server image that runs each named interpreter in compose and Kubernetes
# (server-ft: compose/build-server-ft.sh, `make image-ft`)
SERVER_IMAGES = {PYTHON_DEFAULT: "fileserver-lab/server",
                 PYTHON_FREETHREADED: "fileserver-lab/server-ft"}
# After a capacity search's last step, the master judges it once the workers'
# reports are in (locust/capacity_shape.py): this much longer than the steps.
CAPACITY_SLACK_SECONDS = 15


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Weights:
    """Relative weights of the commands (the keys of ``client.workload.DEFAULT_WEIGHTS``)."""
    list: int
    get: int
    upload: int
    delete: int

    def items(self) -> tuple[tuple[str, int], ...]:
        return tuple((key, getattr(self, key)) for key in WEIGHT_KEYS)


@dataclass(frozen=True)
class Capacity:
    """A capacity search run by ``locust/capacity_shape.py`` (``client.capacity``
    says what each key means)."""
    slo_p95_ms: float = CAPACITY_DEFAULTS["slo_p95_ms"]
    max_failure_ratio: float = CAPACITY_DEFAULTS["max_failure_ratio"]
    start_users: int = CAPACITY_DEFAULTS["start_users"]
    step_users: int = CAPACITY_DEFAULTS["step_users"]
    step_seconds: int = CAPACITY_DEFAULTS["step_seconds"]
    max_users: int = CAPACITY_DEFAULTS["max_users"]
    min_growth: float = CAPACITY_DEFAULTS["min_growth"]
    flat_steps: int = CAPACITY_DEFAULTS["flat_steps"]

    @property
    def steps(self) -> int:
        return math.ceil((self.max_users - self.start_users) / self.step_users) + 1

    @property
    def max_seconds(self) -> int:
        """The longest the search can take."""
        return self.steps * self.step_seconds + CAPACITY_SLACK_SECONDS

    def ramp_seconds(self, spawn_rate: float) -> int:
        return capacity_ramp_seconds(self.step_users, spawn_rate)

    def locust_env(self) -> list[tuple[str, str]]:
        return [(f"LOCUST_CAPACITY_{key.upper()}", f"{getattr(self, key):g}")
                for key in CAPACITY_KEYS]


CAPACITY_KEYS = tuple(f.name for f in dataclasses.fields(Capacity))


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str
    pool: int
    server_cpus: float
    server_memory: str
    users: int
    spawn_rate: float
    duration: int                      # seconds
    locust_workers: int
    weights: Weights
    file_sizes: tuple[str, ...]
    upload_size: str
    wait: str
    description: str = ""
    capacity: Capacity | None = None    # a capacity search instead of a fixed load
    python: str = PYTHON_DEFAULT        # the server's interpreter: default, freethreaded, a path

    @property
    def server_image(self) -> str | None:
        """The server image for compose and Kubernetes (none for a path)."""
        return SERVER_IMAGES.get(self.python)

    @property
    def server_cpu_quantity(self) -> str:
        """``server_cpus`` as a Kubernetes quantity: 0.5 -> "500m", 2 -> "2"."""
        millis = round(self.server_cpus * 1000)
        return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"

    @property
    def run_time(self) -> str:
        """``duration`` as Locust's --run-time."""
        return f"{self.duration}s"

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.server_memory)

    def locust_env(self) -> list[tuple[str, str]]:
        """The scenario's load as LOCUST_* variables, which every backend hands to
        the Locust master (each is also a locust flag)."""
        pairs = [
            ("LOCUST_USERS", str(self.users)),
            ("LOCUST_SPAWN_RATE", f"{self.spawn_rate:g}"),
            ("LOCUST_RUN_TIME", self.run_time),
            ("LOCUST_EXPECT_WORKERS", str(self.locust_workers)),
        ]
        pairs += [(f"LOCUST_{key.upper()}_WEIGHT", str(weight))
                  for key, weight in self.weights.items()]
        pairs += [
            ("LOCUST_FILE_SIZES", ",".join(self.file_sizes)),
            ("LOCUST_UPLOAD_SIZE", self.upload_size),
            ("LOCUST_WAIT", self.wait),
        ]
        if self.capacity is not None:
            pairs += self.capacity.locust_env()
        return pairs


@dataclass(frozen=True)
class ScenarioFile:
    path: str
    scenarios: tuple[Scenario, ...]
    defaults: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scenarios)

    def get(self, name: str) -> Scenario:
        for scenario in self.scenarios:
            if scenario.name == name:
                return scenario
        raise KeyError(name)

    def __iter__(self):
        return iter(self.scenarios)

    def __len__(self) -> int:
        return len(self.scenarios)


# ---------------------------------------------------------------------------
# value checks: each returns the normalised value or raises _Bad(text)

class _Bad(Exception):
    pass


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{_show(value)} is not an integer")
    if not low <= value <= high:
        raise _Bad(f"{value} is not between {low} and {high}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{_show(value)} is not a number")
    if not math.isfinite(value):
        raise _Bad(f"{value} is not a finite number")
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{_show(value)} is not a string")
    return value


def check_name(value: Any) -> str:
    value = _str(value)
    if len(value) > NAME_MAX or not NAME_RE.match(value):
        raise _Bad(f"{value!r} is not a name of at most {NAME_MAX} lower-case letters, "
                   "digits and '-' (starting and ending with a letter or digit)")
    return value


def check_mode(value: Any) -> str:
    if value not in MODES:
        raise _Bad(f"{_show(value)} is not one of {', '.join(MODES)}")
    return value


def check_python(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"{_show(value)} is not {' or '.join(PYTHON_NAMED)} or the path of an "
                   "interpreter")
    if value != value.strip() or "\n" in value:
        raise _Bad(f"{value!r} has leading or trailing blanks or a line break")
    return value


def check_pool(value: Any) -> int:
    return _int(value, MIN_POOL, MAX_POOL)


def check_users(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise _Bad(f"{value} is negative")
    return _int(value, 1, USERS_MAX)


def check_workers(value: Any) -> int:
    return _int(value, WORKERS_MIN, WORKERS_MAX)


def check_spawn_rate(value: Any) -> float:
    rate = _number(value)
    if rate <= 0:
        raise _Bad(f"{_show(value)} is not greater than 0")
    return rate


def check_cpus(value: Any) -> float:
    cpus = _number(value)
    if not CPUS_MIN <= cpus <= CPUS_MAX:
        raise _Bad(f"{_show(value)} is not between {CPUS_MIN} and {CPUS_MAX:g}")
    if abs(cpus * 1000 - round(cpus * 1000)) > 1e-6:
        raise _Bad(f"{_show(value)} is finer than a millicpu (0.001)")
    return cpus


def memory_bytes(text: str) -> int:
    match = MEMORY_RE.match(text)
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * MEMORY_UNITS[match.group(2) or ""]


def check_memory(value: Any) -> str:
    if isinstance(value, str) and MEMORY_RE.match(value):
        if memory_bytes(value) < MEMORY_MIN:
            raise _Bad(f"{value!r} is less than 32Mi")
        return value
    raise _Bad(f"{_show(value)} is not a memory quantity like '512Mi' or '1Gi'")


def size_bytes(text: str) -> int:
    match = SIZE_RE.match(text)
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * SIZE_UNITS[match.group(2)]


def check_size(value: Any) -> str:
    if isinstance(value, str) and SIZE_RE.match(value):
        size = size_bytes(value)
        if size == 0:
            raise _Bad(f"{value!r} is zero")
        if size > SIZE_MAX:
            raise _Bad(f"{value!r} is larger than {size_label(SIZE_MAX)}")
        return value
    raise _Bad(f"{_show(value)} is not a size like '512B', '100KB', '1MB' or '1GB'")


def check_sizes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _Bad(f"{_show(value)} is not a non-empty list of sizes")
    sizes = tuple(check_size(item) for item in value)
    if len(set(sizes)) != len(sizes):
        raise _Bad(f"{value} repeats a size")
    return sizes


def check_duration(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value and DURATION_RE.match(value):
        h, m, s = (int(part or 0) for part in DURATION_RE.match(value).groups())
        seconds = h * 3600 + m * 60 + s
    else:
        raise _Bad(f"{_show(value)} is not a duration: seconds, or like '30s', '2m', '1h30m'")
    if not 1 <= seconds <= DURATION_MAX:
        raise _Bad(f"{_show(value)} is not between 1 second and 24 hours")
    return seconds


def check_wait(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    match = WAIT_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise _Bad(f"{_show(value)} is not a wait like '0.5-1.5' (MIN-MAX seconds) or '1'")
    low, high = match.groups()
    if high is not None and float(low) > float(high):
        raise _Bad(f"{value!r}: the minimum is above the maximum")
    return value


def check_weights(value: Any, base: dict[str, int]) -> Weights:
    if not isinstance(value, dict):
        raise _Bad(f"{_show(value)} is not a mapping of {', '.join(WEIGHT_KEYS)}")
    merged = dict(base)
    for key, weight in value.items():
        if key not in WEIGHT_KEYS:
            raise _Bad(f"unknown weight {_show(key)} (known: {', '.join(WEIGHT_KEYS)})")
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise _Bad(f"{key}: {_show(weight)} is not an integer")
        if weight < 0:
            raise _Bad(f"{key}: {weight} is negative")
        merged[key] = weight
    if not any(merged.values()):
        raise _Bad("all weights are 0")
    return Weights(**merged)


CAPACITY_BOUNDS = {          # key: (kind, lowest, highest)
    "slo_p95_ms": (float, 0.001, 3_600_000), "max_failure_ratio": (float, 0, 1),
    "start_users": (int, 1, USERS_MAX), "step_users": (int, 1, USERS_MAX),
    "step_seconds": (int, 2, DURATION_MAX), "max_users": (int, 1, USERS_MAX),
    "min_growth": (float, 0, 10), "flat_steps": (int, 1, 1000),
}


def check_capacity(value: Any) -> Capacity:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _Bad(f"{_show(value)} is not a mapping of {', '.join(CAPACITY_KEYS)}")
    settings = {}
    for key, item in value.items():
        if key not in CAPACITY_BOUNDS:
            raise _Bad(f"unknown key {_show(key)} (known: {', '.join(CAPACITY_KEYS)})")
        kind, low, high = CAPACITY_BOUNDS[key]
        try:
            settings[key] = _int(item, low, high) if kind is int else _number(item)
        except _Bad as bad:
            raise _Bad(f"{key}: {bad}") from None
        if kind is float and not (low <= settings[key] <= high) or \
                key == "slo_p95_ms" and settings[key] <= 0:
            raise _Bad(f"{key}: {_show(item)} is not "
                       + ("greater than 0" if key == "slo_p95_ms" else f"between {low} and {high}"))
    capacity = Capacity(**settings)
    if capacity.max_users < capacity.start_users:
        raise _Bad(f"max_users: {capacity.max_users} is below start_users "
                   f"({capacity.start_users})")
    if capacity.steps > CAPACITY_BOUNDS["flat_steps"][2]:
        raise _Bad(f"step_users: {capacity.step_users} makes {capacity.steps} steps from "
                   f"{capacity.start_users} to {capacity.max_users} (at most 1000)")
    return capacity


CHECKS = {
    "name": check_name, "description": _str, "mode": check_mode, "pool": check_pool,
    "python": check_python,
    "server_cpus": check_cpus, "server_memory": check_memory, "users": check_users,
    "spawn_rate": check_spawn_rate, "duration": check_duration,
    "locust_workers": check_workers, "file_sizes": check_sizes,
    "upload_size": check_size, "wait": check_wait, "capacity": check_capacity,
}


# ---------------------------------------------------------------------------
# loading

def _where(name: Any) -> str:
    return f"scenario {name!r}" if isinstance(name, str) else f"scenario {_show(name)}"


def _build(where: str, entry: dict, defaults: dict) -> Scenario:
    for key in entry:
        if key not in SCENARIO_KEYS:
            raise ScenarioError(f"{where}: unknown key {_show(key)}")
    try:
        check_name(entry.get("name"))
    except _Bad as bad:
        raise ScenarioError(f"{where}: key 'name': {bad}") from None
    merged = {**defaults, **entry}
    missing = [key for key in REQUIRED_KEYS if key not in merged]
    if missing:
        raise ScenarioError(f"{where}: missing key {missing[0]!r} "
                            "(set it in the scenario or in defaults)")
    values: dict[str, Any] = {}
    for key in SCENARIO_KEYS:
        if key not in merged:
            continue
        try:
            if key == "weights":
                base = dict(DEFAULT_WEIGHTS)
                if key in defaults and key in entry:
                    base = check_weights(defaults[key], base).__dict__
                values[key] = check_weights(merged[key], base)
            else:
                values[key] = CHECKS[key](merged[key])
        except _Bad as bad:
            raise ScenarioError(f"{where}: key {key!r}: {bad}") from None
    values.setdefault("weights", Weights(**DEFAULT_WEIGHTS))
    capacity = values.get("capacity")
    if capacity is not None:
        ramp = capacity.ramp_seconds(values["spawn_rate"])
        if capacity.step_seconds <= ramp:
            raise ScenarioError(
                f"{where}: key 'capacity': step_seconds: {capacity.step_seconds} leaves no "
                f"window to measure: the step's users take {ramp} s to start at spawn_rate "
                f"{values['spawn_rate']:g} (raise step_seconds or spawn_rate)")
        # a search runs until it stops itself; duration is only its upper bound
        values["duration"] = capacity.max_seconds
        values["users"] = capacity.max_users
    return Scenario(**values)


def _expand(index: int, matrix: Any) -> list[tuple[str, dict]]:
    where = f"matrix entry {index + 1}"
    if not isinstance(matrix, dict):
        raise ScenarioError(f"{where}: {_show(matrix)} is not a mapping")
    for key in matrix:
        if key not in SCENARIO_KEYS:
            raise ScenarioError(f"{where}: unknown key {_show(key)}")
    template = matrix.get("name")
    if not isinstance(template, str):
        raise ScenarioError(f"{where}: key 'name': {_show(template)} is not a name "
                            "template like '{mode}-pool{pool}'")

    def varies(key: str, value: Any) -> bool:
        if key == "file_sizes":
            return isinstance(value, list) and bool(value) and all(
                isinstance(item, list) for item in value)
        return key != "name" and isinstance(value, list)

    axes = [key for key, value in matrix.items() if varies(key, value)]
    for key in axes:
        if not matrix[key]:
            raise ScenarioError(f"{where}: key {key!r}: [] has no values to vary over")
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    for placeholder in sorted(fields):
        if placeholder not in axes:
            raise ScenarioError(f"{where}: key 'name': {template!r} uses {{{placeholder}}}, "
                                f"which is not a varying key ({', '.join(axes) or 'none'})")
    expanded = []
    for combo in itertools.product(*(matrix[key] for key in axes)):
        entry = {key: value for key, value in matrix.items() if key not in axes}
        entry.update(zip(axes, combo))
        name = template.format(**{key: _show_plain(value) for key, value in zip(axes, combo)})
        entry["name"] = name
        expanded.append((name, entry))
    return expanded


def _show_plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return str(value).replace(".", "p")
    if isinstance(value, list):
        return "-".join(_show_plain(item) for item in value).lower()
    return str(value).lower() if isinstance(value, str) else str(value)


def parse(data: Any, path: str = "<string>") -> ScenarioFile:
    """Validate already-parsed YAML data."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: the top level is not a mapping "
                            "(expected defaults, scenarios, matrix)")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ScenarioError(f"{path}: unknown top-level key {_show(key)} "
                                f"(known: {', '.join(TOP_LEVEL_KEYS)})")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ScenarioError(f"defaults: {_show(defaults)} is not a mapping")
    for key in defaults:
        if key not in SCENARIO_KEYS or key == "name":
            raise ScenarioError(f"defaults: unknown key {_show(key)}")

    entries: list[tuple[str, dict]] = []
    listed = data.get("scenarios") or []
    if not isinstance(listed, list):
        raise ScenarioError(f"scenarios: {_show(listed)} is not a list")
    for index, entry in enumerate(listed):
        if not isinstance(entry, dict):
            raise ScenarioError(f"scenario {index + 1}: {_show(entry)} is not a mapping")
        if "name" not in entry:
            raise ScenarioError(f"scenario {index + 1}: missing key 'name'")
        entries.append((_where(entry["name"]), entry))

    matrices = data.get("matrix") or []
    if isinstance(matrices, dict):
        matrices = [matrices]
    if not isinstance(matrices, list):
        raise ScenarioError(f"matrix: {_show(matrices)} is not a mapping or a list of them")
    for index, matrix in enumerate(matrices):
        entries.extend((_where(name), entry) for name, entry in _expand(index, matrix))

    if not entries:
        raise ScenarioError(f"{path}: no scenarios (add 'scenarios:' or 'matrix:')")
    scenarios = []
    seen = set()
    for where, entry in entries:
        scenario = _build(where, entry, defaults)
        if scenario.name in seen:
            raise ScenarioError(f"{where}: key 'name': {scenario.name!r} is a duplicate name")
        seen.add(scenario.name)
        scenarios.append(scenario)
    return ScenarioFile(path=path, scenarios=tuple(scenarios), defaults=defaults)


def load(path: str | Path | None = None) -> ScenarioFile:
    """Read and validate a scenario file (default: scenarios.yaml at the repo root)."""
    path = Path(path) if path is not None else DEFAULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ScenarioError(f"{path}: not valid YAML{at}: {problem}") from None
    return parse(data, str(path))
