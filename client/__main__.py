"""``python -m client``: the command-line client (see ``client.cli``)."""

import sys

from client.cli import main

sys.exit(main())
