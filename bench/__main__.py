"""``python3 -m bench``: run the benchmark sections and write their tables (see bench/run.py)."""

import sys

from bench.run import main

sys.exit(main())
