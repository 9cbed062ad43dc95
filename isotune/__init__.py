"""isotune: autotuned intra-sequence overlap (ISO) for tensor-parallel LLM prefill."""

import os

__version__ = "0.2.0"

# torch's C++ side logs warnings and errors straight to stderr (a store client whose peer went
# away, a connect that timed out): echoes of a failure that isotune reports itself, in one
# line, from the exception that follows them. Read once, as torch loads, so it is set here,
# before any import of torch; ISOTUNE_DEBUG=1 keeps them.
if os.environ.get("ISOTUNE_DEBUG") != "1":
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")
