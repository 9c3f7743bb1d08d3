"""`python -m engine.cli`: the same as the `opsflow` command."""

from engine.cli import main

raise SystemExit(main())
