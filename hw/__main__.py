"""``python -m hw``: see :mod:`hw.cli`."""

import sys

from hw.cli import main

if __name__ == "__main__":      # Dask's worker processes (spawn) import this module again
    sys.exit(main())
