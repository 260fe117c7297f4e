"""``python -m server``: read the settings, then run the supervisor.

Exit statuses (``server.supervisor.EXIT_*``): 0 stopped on a signal, 1 an
error (cannot start, a worker cannot boot, a crash loop, any unexpected
error), 2 a bad setting or a storage folder in use, 3 stopped on a signal
but the grace period cut requests short.
"""

import os
import sys

from .config import ConfigError, load_config
from .storage import StorageError, StorageInUseError
from .supervisor import EXIT_ERROR, EXIT_USAGE, Supervisor, configure_logging


def main(argv=None) -> int:
    try:
        config = load_config(argv, os.environ)
    except ConfigError as exc:
        print(f"python -m server: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(config)
    try:
        return Supervisor(config).run()
    except StorageInUseError as exc:     # a second server on one folder: a usage error
        print(f"python -m server: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, StorageError) as exc:
        print(f"python -m server: error: cannot start on {config.host}:{config.port} "
              f"(metrics {config.metrics_host}:{config.metrics_port}, "
              f"storage {config.storage_dir}): {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
