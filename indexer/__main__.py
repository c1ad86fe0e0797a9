"""``python -m indexer``: the same command line as the ``indexer`` script (cli.py)."""

import sys

from .cli import main

sys.exit(main())
