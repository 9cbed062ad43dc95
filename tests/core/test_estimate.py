"""What-if estimates: the tuned split never loses to the unsplit prefill nor beats perfect
overlap, slow links gain more than fast ones, and what does not fit is said, not dropped."""

import pytest
import yaml

from isotune.core.estimate import estimate
from isotune.core.spec import load_spec


def test_estimates_are_bounded_by_the_baseline_and_the_ideal():
    rows, notes = estimate(load_spec("llama2-70b"), ["rtx4090", "a100-sxm"], [4], [1024, 8192], "bfloat16", 4)
    assert notes == [] and len(rows) == 4
    for r in rows:
        assert r.ideal_ms * (1 - 1e-9) <= r.tuned_ms <= r.baseline_ms
        assert r.tuned_ms <= r.iso5050_ms or r.tuned_split == "no split"
        assert 0 < r.comm_share < 1
    by = {(r.hardware, r.tokens): r for r in rows}
    for s in (1024, 8192):  # PCIe without P2P has far more to hide than NVLink
        assert by["rtx4090", s].saving > 2 * by["a100-sxm", s].saving > 0


def test_a_tp_size_that_does_not_fit_the_model_is_a_note():
    rows, notes = estimate(load_spec("llama-30b"), ["a800-sxm"], [4, 8], [2048], "bfloat16", 2)
    assert [r.tp for r in rows] == [4] and len(notes) == 1
    assert notes[0].startswith("a800-sxm tp 8 left out:") and "does not divide" in notes[0]


def test_an_entry_given_by_path_is_named_by_its_own_name():
    from isotune.core.hardware import hardware_path

    path = str(hardware_path("l40s"))
    rows, _ = estimate(load_spec("llama2-7b"), [path], [2], [1024], "bfloat16", 2)
    assert [r.hardware for r in rows] == ["l40s"]


def test_a_rows_times_are_the_roofline_and_the_all_reduce_formulas():
    """One row recomputed by hand from the catalog entry's and the preset's own numbers (read
    from their YAML here, not through isotune): llama3-8b at tp 2 on an A100 SXM, 2048 tokens,
    bfloat16. Per layer and rank, for the unsplit prompt of S tokens:
      GEMMs      max(2·S·W / (peak · 0.70), W·2 bytes / (HBM · 0.80))
      attention  max(4·Hq·D·S·(S/2) / (peak · 0.50 on Ampere), K/V bytes / (HBM · 0.80))
      elementwise  bytes per token · S / (HBM · 0.80)
      all-reduce latency + 2(n-1)/n · S·hidden·2 bytes / busbw
    The unsplit prefill runs them one after another (each op waits for the one before), so its
    time is their sum; perfect overlap would take the larger of compute and communication."""
    from isotune.core.hardware import CATALOG
    from isotune.core.spec import PRESET_DIR

    hw = yaml.safe_load((CATALOG / "a100-sxm.yaml").read_text())
    m = yaml.safe_load((PRESET_DIR / "llama3-8b.yaml").read_text())
    tp, s, nbytes = 2, 2048, 2
    peak = hw["gpu"]["bf16_dense_tflops"]["value"] * 1e12  # FLOP/s
    hbm = hw["gpu"]["hbm_gb_s"]["value"] * 1e9 * 0.80  # bytes/s
    ar = next(a for a in hw["interconnect"]["allreduce"] if a["tp"] == tp)
    h, d, hq, hkv, f = m["hidden"], m["head_dim"], m["heads"] // tp, m["kv_heads"] // tp, m["ffn"] // tp

    w_attn = h * (hq + 2 * hkv) * d + hq * d * h  # this rank's Q, K, V and O weights (elements)
    w_mlp = 3 * h * f  # gate, up, down
    attn_gemm = max(2 * s * w_attn / (peak * 0.70), w_attn * nbytes / hbm)
    attn_core = max(4 * hq * d * s * (s / 2) / (peak * 0.50), 2 * hkv * d * s * nbytes / hbm)
    # norm in and out, RoPE on q and k, K/V cache writes, the residual add (read two, write one)
    attn_elem = s * (2 * h + 2 * (hq + hkv) * d + 2 * hkv * d + 3 * h) * nbytes / hbm
    mlp_gemm = max(2 * s * w_mlp / (peak * 0.70), w_mlp * nbytes / hbm)
    mlp_elem = s * (2 * h + 3 * f + 3 * h) * nbytes / hbm  # norm, SwiGLU (reads 2F, writes F), residual
    compute_ms = m["layers"] * (attn_gemm + attn_core + attn_elem + mlp_gemm + mlp_elem) * 1e3
    mb = s * h * nbytes / 1e6  # one all-reduce's message; 1 GB/s moves 1 MB per ms
    one_ar_ms = ar["latency_us"] / 1e3 + 2 * (tp - 1) / tp * mb / ar["busbw_gb_s"]
    comm_ms = m["layers"] * 2 * one_ar_ms  # after attention and after the MLP

    (row,), notes = estimate(load_spec("llama3-8b"), ["a100-sxm"], [tp], [s], "bfloat16", 4)
    assert notes == [] and (row.hardware, row.tp, row.tokens) == ("a100-sxm", tp, s)
    assert row.baseline_ms == pytest.approx(compute_ms + comm_ms, rel=1e-9)
    assert row.ideal_ms == pytest.approx(max(compute_ms, comm_ms), rel=1e-9)
    assert row.comm_share == pytest.approx(comm_ms / (compute_ms + comm_ms), rel=1e-9)
    # and the numbers are the ones a reader can check by hand: 2048 tokens are compute-bound here
    assert 0.05 < row.comm_share < 0.5 and compute_ms > comm_ms
