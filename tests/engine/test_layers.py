import pytest
import torch
import torch.nn.functional as F

from isotune.engine.attention import _chunk_attention_cuda, chunk_attention
from isotune.engine.layers import rope_inv_freq


def _dense_reference(q, k, v, start, end):
    """Plain softmax attention of queries start..end-1 over keys 0..end-1 with a causal mask."""
    groups = q.shape[1] // k.shape[1]
    k, v = k[:, :, :end].repeat_interleave(groups, 1), v[:, :, :end].repeat_interleave(groups, 1)
    qpos = torch.arange(start, end)[:, None]
    mask = torch.arange(end)[None, :] <= qpos  # (T, end) lower-right causal
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("start,end", [(0, 96), (32, 96), (80, 96), (95, 96), (48, 49), (16, 160)])
def test_chunk_attention_matches_masked_dense_attention(dtype, tol, start, end):
    torch.manual_seed(0)
    hq, hkv, d, max_len = 4, 2, 32, 160
    q = torch.randn(1, hq, end - start, d, dtype=dtype)
    k = torch.randn(1, hkv, max_len, d, dtype=dtype)
    v = torch.randn(1, hkv, max_len, d, dtype=dtype)
    out = chunk_attention(q, k, v, start, end)
    assert out.shape == q.shape and out.dtype == dtype
    assert (out.float() - _dense_reference(q, k, v, start, end)).abs().max() < tol


@pytest.mark.parametrize("native_gqa", [True, False])
@pytest.mark.parametrize("start,end", [(0, 96), (32, 96), (95, 96), (16, 160)])
def test_gpu_attention_path_reads_grouped_heads_natively_or_repeated(native_gqa, start, end):
    """The SDPA path GPUs take (run here on CPU tensors): grouped K/V heads handed to the kernel
    as they are (enable_gqa, flash in bf16) or repeated (fp32's kernel) give the same attention."""
    torch.manual_seed(0)
    hq, hkv, d, max_len = 8, 2, 32, 160
    q = torch.randn(1, hq, end - start, d)
    k, v = torch.randn(1, hkv, max_len, d), torch.randn(1, hkv, max_len, d)
    out = _chunk_attention_cuda(q, k, v, start, end, native_gqa=native_gqa, how="sdpa")
    assert out.shape == q.shape
    assert (out - _dense_reference(q, k, v, start, end)).abs().max() < 1e-5


def test_rope_scaling_variants():
    base = rope_inv_freq(64, 5e5, None)
    lin = rope_inv_freq(64, 5e5, {"rope_type": "linear", "factor": 4.0})
    assert torch.allclose(lin, base / 4)
    l3 = rope_inv_freq(
        64,
        5e5,
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    )
    assert l3[0] == base[0]  # short wavelengths untouched
    assert torch.isclose(l3[-1], base[-1] / 8)  # long wavelengths scaled by the factor


def test_a_torch_too_old_for_the_attention_is_refused_in_one_line():
    """torch 2.8's CPU flash attention reads grouped K/V heads as garbage (errors of 1e37,
    measured): building a model on it is refused, naming the fix; later ones, dev builds too, pass."""
    import pytest

    from isotune.core.errors import BadInput
    from isotune.engine.model import check_torch

    for old in ("2.8.0+cu128", "2.5.1", "1.13.1"):
        with pytest.raises(BadInput, match=r"too old for isotune .* pip install 'torch>=2\.9'"):
            check_torch(old)
    for fine in ("2.9.1+cu128", "2.10.0a0+git1234", "2.13.0+cpu", "3.0.0"):
        check_torch(fine)
    check_torch()  # this one


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_rms_norm_takes_its_input_dtype_as_the_float32_round_trip(dtype):
    """rms_norm hands x to torch in its own dtype (no casts: host time per launch on GPUs); on
    CPU that is bit for bit the reference Llama's cast to fp32, norm, cast back."""
    from isotune.engine.layers import rms_norm

    torch.manual_seed(0)
    x, w = (torch.randn(37, 576) * 3).to(dtype), torch.rand(576).to(dtype)
    want = w * F.rms_norm(x.float(), (576,), eps=1e-5).to(dtype)
    assert torch.equal(rms_norm(x, w, 1e-5), want)
