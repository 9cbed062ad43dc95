"""A later chunk's attention on a GPU, each kernel it may take, against float32 attention on CPU,
and the layer's RMSNorm without its casts. Marked `cuda`; skipped where no GPU is visible (CI
has none). The first doctor run on an H200 found the second of two chunks 80% slower in its
attention kernel than the unsplit prefill: the square causal call ran on cuDNN, the lower-right
one on FlashAttention-2 (benchmarks/gpu_probe.py)."""

import pytest
import torch
import torch.nn.functional as F

from isotune.engine.layers import _chunk_attention_cuda, _kernels, chunk_attention, rms_norm

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BF16 = torch.bfloat16


def _qkv(hq, hkv, t, end, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(1, hq, t, 128, device="cuda", dtype=BF16, generator=g)  # (1, Hq, T, D)
    k = torch.randn(1, hkv, end + 64, 128, device="cuda", dtype=BF16, generator=g)  # a cache longer than end
    v = torch.randn(1, hkv, end + 64, 128, device="cuda", dtype=BF16, generator=g)
    return q, k, v


def _want(q, k, v, start, end):
    return chunk_attention(q.float().cpu(), k.float().cpu(), v.float().cpu(), start, end)  # the CPU kernels


def _ops(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events()}


@pytest.mark.parametrize("how", ["cudnn", "flash", "sdpa"])
@pytest.mark.parametrize("hq,hkv,start,end", [(32, 8, 512, 1024), (8, 8, 1000, 1100), (16, 4, 64, 2048)])
def test_each_kernel_of_a_later_chunk_is_causal_at_the_lower_right(how, hq, hkv, start, end):
    q, k, v = _qkv(hq, hkv, end - start, end)
    try:
        out = _chunk_attention_cuda(q, k, v, start, end, how=how)
    except RuntimeError as e:  # cuDNN attention needs a recent GPU and build: say which
        if how == "cudnn":
            pytest.skip(f"no cuDNN attention on this GPU/torch: {str(e).splitlines()[0][:120]}")
        raise
    assert out.shape == q.shape and out.dtype == BF16
    assert (out.float().cpu() - _want(q, k, v, start, end)).abs().max() < 3e-2


@pytest.mark.parametrize("start,end", [(4096, 8192), (512, 1024)])
def test_grouped_heads_go_to_a_native_kernel_and_big_chunks_to_cudnn_where_sdpa_prefers_it(start, end):
    q, k, v = _qkv(32, 8, end - start, end)
    square_cudnn, flash = _kernels(q, k)
    assert flash  # bf16, head_dim 128: flash attention reads grouped heads on any GPU torch supports it on
    names = _ops(lambda: chunk_attention(q, k, v, start, end))
    assert not any("repeat_interleave" in n for n in names)
    big = 4 * (end - start) * (start + (end - start) / 2) * 32 * 128 >= 2**36
    on_cudnn = any("cudnn_attention" in n for n in names)
    assert on_cudnn == (square_cudnn and big), sorted(n for n in names if "attention" in n)


def test_rms_norm_in_bf16_is_the_float32_round_trip():
    torch.manual_seed(0)
    x = (torch.randn(1024, 4096, device="cuda") * 3).to(BF16)  # (T, hidden)
    w = torch.rand(4096, device="cuda").to(BF16)
    want = w * F.rms_norm(x.float(), (4096,), eps=1e-5).to(BF16)  # the reference Llama's casts
    got = rms_norm(x, w, 1e-5)
    assert got.dtype == BF16
    # one bf16 ulp at most, where the kernel's fp32 reduction runs in another order
    assert ((got.float() - want.float()).abs() <= want.float().abs() * 2**-7).all()
