"""`python -m isotune ...`: the console script without relying on PATH (isotune doctor runs its
steps this way, with the interpreter that runs it)."""

import sys

from isotune.cli import main

sys.exit(main())
