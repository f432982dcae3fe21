"""``python -m fastdenoise``: the command line (see :mod:`fastdenoise.cli`)."""
import sys

from fastdenoise.cli import main

sys.exit(main())
