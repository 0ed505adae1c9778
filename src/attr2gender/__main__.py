"""``python -m attr2gender``: the command line."""

import sys

from .cli import main

sys.exit(main())
