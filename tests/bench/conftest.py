# the chart tests draw with matplotlib: its fonts are loaded once, before the leak check
from tests.scenarios.conftest import fonts_loaded  # noqa: F401
