"""``python -m demo``: run the whole stack end to end (see demo.run)."""

import sys

from demo.run import main

sys.exit(main())
