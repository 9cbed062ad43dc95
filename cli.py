"""Top-level entry so `torchrun --nproc-per-node N cli.py run ...` works from a checkout."""

import sys

from isotune.cli import main

if __name__ == "__main__":
    sys.exit(main())
