"""``python -m certrotate``: the same as the ``certrotate`` console script."""

from certrotate.cli import main

raise SystemExit(main())
