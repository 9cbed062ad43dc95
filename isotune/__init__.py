"""isotune: autotuned intra-sequence overlap (ISO) for tensor-parallel LLM prefill."""

import os

__version__ = "0.2.0"

# torch's C++ side logs warnings straight to stderr (a store client whose peer went away, a
# socket reset): echoes of a failure that isotune reports itself, in one line. Errors stay:
# where no Python exception follows (NCCL's watchdog taking a process down after a collective
# timed out) they are the only account. Read once, as torch loads, so it is set here, before
# any import of torch (a user's own setting wins); ISOTUNE_DEBUG=1 keeps the warnings.
if os.environ.get("ISOTUNE_DEBUG") != "1":
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
