"""The course file protocol's wire format, shared by server and client (stdlib only)."""

from .protocol import *  # noqa: F401,F403
from .protocol import __all__  # noqa: F401
