"""``python -m transports`` runs the ``hbproto`` command."""

import sys

from .cli import main

sys.exit(main())
