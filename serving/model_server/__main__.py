"""``python -m serving.model_server``."""

import sys

from serving.cli import main

if __name__ == "__main__":
    sys.exit(main())
