"""The course file protocol's wire format, shared by server and client.

``protocol``: requests, replies, their decoders and encoders; ``streaming``:
base64 in aligned pieces and streamed messages batched into sends;
``receivebuffer``: the input buffer both decoders share.  Base64 is done by
pybase64 (SIMD) when it is installed, else by the standard library
(``wire.streaming.BASE64_ENGINE``); nothing else outside the standard library.
"""

from .protocol import *  # noqa: F401,F403
from .protocol import __all__ as _protocol_all
from .streaming import *  # noqa: F401,F403
from .streaming import __all__ as _streaming_all

__all__ = [*_protocol_all, *_streaming_all]
