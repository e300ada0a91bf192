"""``python -m fastjoblib``: see fastjoblib._cli (inspect, convert, bench)."""
import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
