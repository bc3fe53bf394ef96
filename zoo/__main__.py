"""``python -m zoo`` runs the command line."""

import sys

from zoo.cli import main

sys.exit(main())
