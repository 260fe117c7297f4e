"""``python -m server.healthcheck [healthz|readyz|stats]``: probe the local metrics port.

For container health checks: exits 0 when the endpoint answers 200, 1
otherwise, and prints the endpoint's JSON.  The port and address come from
``FS_METRICS_PORT`` and ``FS_METRICS_HOST`` like the server's own; a
wildcard address (``0.0.0.0``, ``::``) is probed on loopback.
"""

import os
import sys
import urllib.error
import urllib.request

import wire
from server.config import ServerConfig

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def probe_url(environ, endpoint: str) -> str:
    port = environ.get("FS_METRICS_PORT", str(wire.DEFAULT_METRICS_PORT))
    host = environ.get("FS_METRICS_HOST", ServerConfig.metrics_host).strip()
    host = _WILDCARDS.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/{endpoint}"


def main(argv: list[str]) -> int:
    endpoint = argv[0] if argv else "healthz"
    if endpoint not in ("healthz", "readyz", "stats"):
        print("usage: python -m server.healthcheck [healthz|readyz|stats]", file=sys.stderr)
        return 2
    url = probe_url(os.environ, endpoint)
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(error.read().decode(), file=sys.stderr)
    except OSError as error:
        print(f"{url}: {getattr(error, 'reason', error)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
