"""A later chunk's attention on a GPU, each kernel it may take, against float32 attention on CPU,
and the layer's RMSNorm without its casts. Marked `cuda`; skipped where no GPU is visible (CI
has none). The first doctor run on an H200 found the second of two chunks 80% slower in its
attention kernel than the unsplit prefill: the square causal call ran on cuDNN, the lower-right
one on FlashAttention-2 (benchmarks/gpu_probe.py)."""

import pytest
import torch
import torch.nn.functional as F

from isotune.engine.attention import _chunk_attention_cuda, chunk_attention
from isotune.engine.kernels import kernels_for
from isotune.engine.layers import rms_norm

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
    assert (out.float().cpu() - _want(q, k, v, start, end)).abs().max() < 4e-3  # bf16 rounding ~1e-3


@pytest.mark.parametrize("start,end", [(4096, 8192), (512, 1024)])
def test_grouped_heads_go_to_a_native_kernel_and_big_chunks_to_cudnn_where_sdpa_prefers_it(start, end):
    q, k, v = _qkv(32, 8, end - start, end)
    square_cudnn, flash = kernels_for(q, k)
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


@pytest.mark.parametrize("how", ["cudnn", "flash"])
def test_the_models_own_query_layout_goes_through_each_kernel(how):
    """q as TPModel.attn hands it over: a transposed slice of the rotated (T, Hq+Hkv, D) output,
    its rows (Hq+Hkv)*D apart, not a contiguous tensor (cuDNN has been wrong on queries cut out
    of an interleaved QKV buffer: TransformerEngine#1195)."""
    hq, hkv, start, end = 32, 8, 512, 1024
    _, k, v = _qkv(hq, hkv, end - start, end)
    qk = torch.randn(end - start, hq + hkv, 128, device="cuda", dtype=BF16)  # (T, Hq+Hkv, D)
    q = qk[:, :hq].transpose(0, 1).unsqueeze(0)  # (1, Hq, T, D), strided as the model's
    try:
        out = _chunk_attention_cuda(q, k, v, start, end, how=how)
    except RuntimeError as e:
        if how == "cudnn":
            pytest.skip(f"no cuDNN attention on this GPU/torch: {str(e).splitlines()[0][:120]}")
        raise
    assert (out.float().cpu() - _want(q.contiguous(), k, v, start, end)).abs().max() < 4e-3


@pytest.mark.parametrize("threshold", [0, 2**62])
def test_iso_equals_baseline_with_every_later_chunk_on_cudnn_or_on_flash(monkeypatch, threshold):
    """The whole model at 1024 tokens, every later chunk forced through the merged cuDNN calls
    (threshold 0; where SDPA prefers cuDNN) or through FlashAttention-2: a bf16 split's logits
    may stray from float32's at most twice as far as the unsplit prefill's (doctor's rule)."""
    from isotune.core.chunking import chunk_bounds
    from isotune.core.spec import load_spec
    from isotune.engine import kernels
    from isotune.engine.executor import prefill
    from isotune.engine.model import POISON, build_model
    from isotune.engine.rank import single

    monkeypatch.setattr(kernels, "CUDNN_MERGE_MIN_FLOP", threshold)
    info = single("cuda")  # one rank on cuda:0, no group
    spec = load_spec("small", layers=2)
    ids = torch.randint(0, spec.vocab, (1024,), device="cuda", generator=torch.Generator("cuda").manual_seed(0))

    def logits(model, bounds):
        model.fill_cache(POISON)  # no run may read another's K/V
        return model.logits(model.final_norm(prefill(model, ids, bounds))).float()

    exact = logits(build_model(spec, info, torch.float32, 1024, seed=0), [0, 1024])
    model = build_model(spec, info, BF16, 1024, seed=0)
    base_err = (logits(model, [0, 1024]) - exact).abs().max().item()
    for ratios in ([0.5, 0.5], [0.3, 0.7], [0.25] * 4):
        err = (logits(model, chunk_bounds(1024, ratios, 64)) - exact).abs().max().item()
        assert err <= 2 * base_err + 1e-3, (ratios, err, base_err)
