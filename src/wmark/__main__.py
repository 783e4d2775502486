"""``python -m wmark``: the same as the ``wmark`` command."""
import sys

from wmark.cli import main

sys.exit(main())
