"""isotune: autotuned intra-sequence overlap (ISO) for tensor-parallel LLM prefill."""

__version__ = "0.1.0"
