"""``python -m server.healthcheck [healthz|readyz]``: probe the local metrics port.

For container health checks: exits 0 when the endpoint answers 200, 1
otherwise, and prints the endpoint's JSON.  The port comes from
``FS_METRICS_PORT`` like the server's own.
"""

import os
import sys
import urllib.error
import urllib.request

import wire


def main(argv: list[str]) -> int:
    endpoint = argv[0] if argv else "healthz"
    if endpoint not in ("healthz", "readyz", "stats"):
        print("usage: python -m server.healthcheck [healthz|readyz|stats]", file=sys.stderr)
        return 2
    port = os.environ.get("FS_METRICS_PORT", str(wire.DEFAULT_METRICS_PORT))
    url = f"http://127.0.0.1:{port}/{endpoint}"
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
