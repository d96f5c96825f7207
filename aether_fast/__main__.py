"""``python -m aether_fast``: the command line (see ``cli.py``)."""

from .cli import main

raise SystemExit(main())
