"""The README's settings table stays in step with the settings the server declares."""

import re

import pytest

from server.config import SETTINGS, ServerConfig
from tests.support import REPO_ROOT

pytestmark = pytest.mark.unit


def test_every_setting_is_documented_with_its_flag():
    readme = (REPO_ROOT / "README.md").read_text()
    rows = {m.group(2): m.group(1) for m in re.finditer(r"^\| (`--[^|]+) \| `(FS_\w+)` \|",
                                                        readme, re.M)}
    assert set(rows) == {setting.env for setting in SETTINGS}
    for setting in SETTINGS:
        assert f"`{setting.flags[0]}`" in rows[setting.env]


def test_documented_defaults_match():
    readme = (REPO_ROOT / "README.md").read_text()
    defaults = ServerConfig()
    for setting in SETTINGS:
        row = next(line for line in readme.splitlines() if f"`{setting.env}`" in line
                   and line.startswith("| `--"))
        value = getattr(defaults, setting.field)
        shown = row.split("|")[3].strip()
        if isinstance(value, float):
            assert shown.strip("`") == f"{value:g}", setting.env
        elif setting.env not in ("FS_MAX_UPLOAD_BYTES", "FS_MAX_LINE_BYTES"):
            assert shown.strip("`") == str(value), setting.env
