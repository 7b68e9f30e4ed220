"""`python -m deploy <command>`: see deploy/cli.py."""

from deploy.cli import main

raise SystemExit(main())
