"""``python -m hw``: see :mod:`hw.cli`."""

import sys

from hw.cli import main

sys.exit(main())
