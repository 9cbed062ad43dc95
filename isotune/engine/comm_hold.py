"""A kernel that holds CTAs on a GPU for a given time: an emulated link's all-reduce where the
compute runs on a GPU (engine.link, the stand-in `--ranks 1 --link ...`).

NCCL's all-reduce is a kernel: for its whole transfer it occupies CTAs (one per channel, on
their own SMs), and the compute it hides behind runs beside it, slower. A stand-in has no peer
to all-reduce with, so to time the compute as it runs beside a real collective, the comm stream
gets this kernel instead: `ctas` CTAs of core.link.GPU_HOLD_THREADS threads (NCCL's usual block)
that spin on the GPU's global timer until `ns` nanoseconds have passed since each began. It
starts when SMs are free for it, as NCCL's kernel does, and kernels on one stream run one after
another, as transfers on one link do.

What it does not copy of a collective: it moves no bytes (no HBM or NVLink traffic), uses no
shared memory (so a compute CTA may still share its SM), and its warps spin rather than wait on
loads. How much it slows the compute beside it is measured on a GPU against what a real
collective does (benchmarks/gpu_standin.py), not assumed.

Triton compiles it (PyTorch's CUDA wheels bring Triton on Linux; no nvcc is needed), imported
only when a GPU stand-in asks: a broken Triton cannot stop any other command. Where it is
missing, `unavailable()` says so and the launching process refuses --link on GPUs in one line.
"""

from __future__ import annotations

import functools

import torch

from isotune.core.link import GPU_HOLD_THREADS


@functools.cache
def _kernel():
    """The Triton kernel, compiled at its first launch; an exception where Triton cannot load."""
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["ns"])  # one compile for every time, not one per divisibility
    def spin(ns):
        # %globaltimer: the GPU's nanosecond clock, the same on every SM; read again each turn
        t0 = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)
        t = t0
        while t - t0 < ns:
            t = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)

    return spin


def unavailable() -> str | None:
    """None when the kernel can run in this process, else why not (one line, with the fix)."""
    try:
        _kernel()
    except Exception as e:  # not installed, or installed but broken: either way no hold
        why = "it is not installed" if isinstance(e, ImportError) else f"it failed to load ({type(e).__name__})"
        return (
            f"the GPU link's hold kernel needs triton, and {why}: pip install triton (PyTorch's CUDA wheels bring it)"
        )
    if not torch.cuda.is_available():
        return "the GPU link's hold kernel needs a CUDA device"
    return None


def hold(ns: int, ctas: int, stream: torch.cuda.Stream) -> None:
    """Enqueue on `stream` a kernel that holds `ctas` CTAs for `ns` nanoseconds."""
    with torch.cuda.stream(stream):
        _kernel()[(ctas,)](int(ns), num_warps=GPU_HOLD_THREADS // 32)
