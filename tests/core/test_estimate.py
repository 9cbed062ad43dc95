"""What-if estimates: the tuned split never loses to the unsplit prefill nor beats perfect
overlap, slow links gain more than fast ones, and what does not fit is said, not dropped."""

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
