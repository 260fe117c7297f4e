"""``python -m server``: read the settings, then run the supervisor."""

import os
import sys

from .config import ConfigError, load_config
from .supervisor import Supervisor, configure_logging


def main(argv=None) -> int:
    try:
        config = load_config(argv, os.environ)
    except ConfigError as exc:
        print(f"python -m server: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config)
    try:
        return Supervisor(config).run()
    except OSError as exc:
        print(f"python -m server: error: cannot start on {config.host}:{config.port} "
              f"(metrics port {config.metrics_port}, storage {config.storage_dir}): {exc}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
