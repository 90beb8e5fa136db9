"""``python -m sketchdown``: the same command as ``sketchdown``."""

import sys

from .cli import main

sys.exit(main())
