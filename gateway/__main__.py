"""`python -m gateway` is the `roomwarden` command."""

from gateway.cli import main

raise SystemExit(main())
