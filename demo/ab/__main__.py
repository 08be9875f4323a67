"""``python -m demo.ab``: the simulated A/B (see demo.ab.cli)."""

import sys

from demo.ab.cli import main

sys.exit(main())
