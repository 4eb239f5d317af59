"""`python -m voice_router.cli ...` runs the `voice-router` command."""

from voice_router.cli import main

raise SystemExit(main())
