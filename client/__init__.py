"""Client library for the course file protocol.

    from client import FileClient
    with FileClient("127.0.0.1", 6665, persistent=True) as files:
        files.upload("a.txt", b"hello")
        files.get("a.txt", dest="copy.txt")
        print(files.list())

See ``client.filesclient`` for the details.
"""

from .filesclient import (DEFAULT_METRICS_PORT, DEFAULT_PORT, ClientConnectionError,
                          ClientProtocolError, ClientTimeoutError, FileClient, FileClientError,
                          ServerError, parse_address)

__all__ = [
    "FileClient", "parse_address", "DEFAULT_PORT", "DEFAULT_METRICS_PORT",
    "FileClientError", "ServerError", "ClientProtocolError", "ClientConnectionError",
    "ClientTimeoutError",
]
