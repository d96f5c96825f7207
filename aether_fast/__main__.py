"""``python -m aether_fast``: the command line (see ``ops/cli.py``)."""

from .ops.cli import main

raise SystemExit(main())
