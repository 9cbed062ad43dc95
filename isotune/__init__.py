"""isotune: autotuned intra-sequence overlap (ISO) for tensor-parallel LLM prefill."""

__version__ = "0.2.0"
