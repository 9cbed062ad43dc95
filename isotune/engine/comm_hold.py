"""A kernel that holds CTAs on a GPU for a given time: an emulated link's all-reduce where the
compute runs on a GPU (engine.link, the stand-in `--ranks 1 --link ...`).

NCCL's all-reduce is a kernel: for its whole transfer it occupies CTAs (one per channel, on
their own SMs), and the compute it hides behind runs on the SMs left over, slower. A stand-in
has no peer to all-reduce with, so to time the compute as it runs beside a real collective, the
comm stream gets this kernel instead: `ctas` CTAs of 512 threads (NCCL's usual block) that spin
on the GPU's global timer until `ns` nanoseconds have passed since each began. It starts when
SMs are free for it, as NCCL's kernel does, and kernels on one stream run one after another, as
transfers on one link do.

Triton compiles it (PyTorch's CUDA wheels bring Triton on Linux; no nvcc is needed). Where
Triton is missing, `unavailable()` says so and the launching process refuses --link on GPUs in
one line, rather than holding with something that occupies other SMs than asked.
"""

from __future__ import annotations

import torch

try:  # a CPU build of torch comes without triton; only a GPU stand-in needs it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

THREADS = 512  # per CTA: NCCL's default block (NCCL_NTHREADS), so a held SM has what NCCL leaves of it
DEFAULT_CTAS = 16  # NCCL takes 8-32 channels on NVLink by message size and topology; --comm-ctas sets it

if triton is not None:

    @triton.jit(do_not_specialize=["ns"])  # one compile for every time, not one per divisibility
    def _spin(ns):
        # %globaltimer: the GPU's nanosecond clock, the same on every SM; read again each turn
        t0 = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)
        t = t0
        while t - t0 < ns:
            t = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)


def unavailable() -> str | None:
    """None when the kernel can run in this process, else why not (one line, with the fix)."""
    if triton is None:
        return (
            "the GPU link's hold kernel needs triton (it comes with PyTorch's CUDA wheels on Linux): pip install triton"
        )
    if not torch.cuda.is_available():
        return "the GPU link's hold kernel needs a CUDA device"
    return None


def hold(ns: int, ctas: int, stream: torch.cuda.Stream) -> None:
    """Enqueue on `stream` a kernel that holds `ctas` CTAs for `ns` nanoseconds."""
    with torch.cuda.stream(stream):
        _spin[(ctas,)](int(ns), num_warps=THREADS // 32)
