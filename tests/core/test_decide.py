"""The keep-or-stay-unsplit decision on synthetic paired repeats, and its sentence."""

import random
import re

import pytest

from isotune.core.decide import bounds_text, decide, simplicity
from isotune.core.stats import paired_change, typical

BOUNDS = {
    "iso5050": [0, 512, 1024],
    "c0": [0, 400, 1024],
    "c1": [0, 384, 704, 1024],
}


def _paired(n: int, factors: dict[str, float], noise: float, seed: int = 0) -> tuple[list[float], dict]:
    """Baseline repeats that drift (shared by every variant in a repeat) plus per-run noise;
    each candidate runs `factor` x the baseline's time."""
    r = random.Random(seed)
    drift = [100.0 * (1 + 0.05 * r.uniform(-1, 1)) for _ in range(n)]
    base = [d * (1 + r.gauss(0, noise)) for d in drift]
    return base, {c: [d * f * (1 + r.gauss(0, noise)) for d in drift] for c, f in factors.items()}


def test_a_clear_win_is_kept_with_its_numbers():
    base, cands = _paired(10, {"iso5050": 0.95, "c0": 0.90}, noise=0.01)
    v = decide(base, cands, BOUNDS)
    assert v.keep == "c0" and v.settled
    iv = paired_change(base, cands["c0"])
    assert iv.high < 0
    assert v.sentence.startswith(f"kept 0.39/0.61: {iv.estimate * 100:+.1f}% vs baseline (95% CI ")
    assert re.search(r"-\d+\.\d% vs 50/50, won 10 of 10 paired repeats$", v.sentence), v.sentence


def test_splits_within_noise_of_each_other_keep_the_simplest():
    # c1 (3 chunks) looks 0.3% faster than 50/50, far inside the noise; both clearly beat the baseline
    base, cands = _paired(10, {"iso5050": 0.90, "c1": 0.897}, noise=0.02)
    v = decide(base, cands, BOUNDS)
    assert v.keep == "iso5050", v.sentence
    assert "which is ISO 50/50" in v.sentence and "simpler than 0.38/0.31/0.31" in v.sentence
    assert v.sentence.endswith("within noise")


def test_a_gain_within_noise_stays_unsplit_and_asks_for_more_repeats():
    base, cands = _paired(6, {"iso5050": 0.995, "c0": 0.99}, noise=0.04)
    v = decide(base, cands, BOUNDS)
    assert v.keep is None and not v.settled and v.ms == pytest.approx(typical(base))
    assert v.sentence.startswith("kept no split: the best candidate, ")
    assert "over 6 paired repeats: within noise" in v.sentence
    lo, hi = (float(x) for x in re.search(r"95% CI ([-+]\d+\.\d)%\.\.([-+]\d+\.\d)%", v.sentence).groups())
    assert lo < 0 < hi


def test_a_clear_win_is_not_hidden_by_a_noisier_lower_estimate():
    base, cands = _paired(10, {"iso5050": 0.92}, noise=0.005)
    wild = [b * f for b, f in zip(base, [0.3, 1.6, 0.4, 1.5, 0.35, 1.7, 0.4, 1.4, 0.3, 1.5], strict=True)]
    assert paired_change(base, wild).estimate < paired_change(base, cands["iso5050"]).estimate
    v = decide(base, cands | {"c0": wild}, BOUNDS)
    assert v.keep == "iso5050" and v.outcome == "kept"


def test_a_clear_loss_stays_unsplit():
    base, cands = _paired(8, {"iso5050": 1.30, "c0": 1.20}, noise=0.01)
    v = decide(base, cands, BOUNDS)
    assert v.keep is None and v.settled
    assert v.sentence.startswith("kept no split: every split was slower; the best, 0.39/0.61, by +")


def test_cost_model_predictions_need_a_margin_and_ties_go_to_the_simplest():
    v = decide([100.0], {"iso5050": [90.0], "c1": [89.8]}, BOUNDS)
    assert v.keep == "iso5050" and "predicted by the cost model" in v.sentence and "simpler than" in v.sentence
    v = decide([100.0], {"iso5050": [99.5], "c0": [99.4]}, BOUNDS)
    assert v.keep is None and v.outcome == "too small" and "saves 0.6%; a split must save 1%" in v.sentence
    v = decide([100.0], {"iso5050": [103.0]}, BOUNDS)  # a predicted loss is said as one
    assert v.keep is None and v.outcome == "slower" and "0.50/0.50, is 3.0% slower" in v.sentence
    # a tie with the best must still save the 1% itself
    v = decide([100.0], {"iso5050": [99.2], "c1": [98.8]}, BOUNDS)
    assert v.keep == "c1"
    assert decide([100.0], {}, BOUNDS).keep is None


def test_simplicity_and_labels():
    assert sorted(BOUNDS, key=lambda c: simplicity(BOUNDS[c])) == ["iso5050", "c0", "c1"]
    assert bounds_text([0, 400, 1024]) == "0.39/0.61"
