"""python -m failcast."""

from failcast.cli import main

raise SystemExit(main())
