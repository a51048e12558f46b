"""`python -m lazarus …`: the same as the `lazarus` command."""

import sys

from lazarus.cli.main import main

sys.exit(main())
