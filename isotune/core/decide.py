"""Keep a split or stay unsplit: the decision behind every plan bucket, from paired, interleaved
repeats, with the sentence that explains it. Pure Python.

Measured samples (several repeats): each candidate's change against the baseline is a paired
interval (`stats.paired_change`). A split is kept only when its interval lies below zero; among
the splits that do, and that the fastest one does not clearly beat, the simplest is kept (fewer
chunks, then closer to an even split): a plan should not carry a 3-way split that no
measurement can tell from 50/50. When the fastest candidate's interval still straddles zero the
question is open (`settled` False: more repeats may settle it); if it stays open the bucket
runs unsplit, "within noise". When it lies above zero every split lost.

Cost-model samples (one value each, no noise): a split is kept when it is predicted to save at
least MODEL_MIN_GAIN, and splits within MODEL_TIE of the best count as ties, the simplest kept;
the model's own error is larger than either margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from isotune.core.chunking import ratios_of, split_text
from isotune.core.numbers import ci_text, pct
from isotune.core.stats import Interval, paired_change, typical, wins

MODEL_MIN_GAIN = 0.01
MODEL_TIE = 0.005
REFERENCE = "iso5050"  # the split peers use; the decision says how the kept one compares to it


KEPT, NOISE, SLOWER, SMALL, NONE = "kept", "within noise", "slower", "too small", "no split fits"


@dataclass(kw_only=True)
class Verdict:
    keep: str | None  # the kept candidate's name, None: stay unsplit
    ms: float  # typical ms of what is kept
    sentence: str  # the decision in one plain line, with its numbers
    settled: bool  # the evidence decides it; False: more repeats could change it
    outcome: str  # KEPT, NOISE, SLOWER, SMALL or NONE
    changes: dict[str, Interval] = field(default_factory=dict)  # candidate -> change vs baseline


def bounds_text(bounds: list[int]) -> str:
    """A split given by its boundaries [0, ..., S], as core.chunking.split_text says it."""
    return split_text(ratios_of(bounds))


def simplicity(bounds: list[int]) -> tuple[int, float]:
    """Sort key, simplest first: fewer chunks, then the smaller largest deviation from even."""
    k, s = len(bounds) - 1, bounds[-1]
    return k, max(abs((b - a) / s - 1 / k) for a, b in pairwise(bounds))


def decide(baseline: list[float], candidates: dict[str, list[float]], bounds: dict[str, list[int]]) -> Verdict:
    """The verdict on `candidates` (name -> per-repeat ms, paired with `baseline`'s repeats;
    `bounds` names each one's split)."""
    base_ms = typical(baseline)
    if not candidates:
        text = "kept no split: no split fits this length"
        return Verdict(keep=None, ms=base_ms, sentence=text, settled=True, outcome=NONE)
    if all(len(ts) == 1 for ts in [baseline, *candidates.values()]):
        return _decide_predicted(baseline[0], {c: ts[0] for c, ts in candidates.items()}, bounds)
    changes = {c: paired_change(baseline, ts) for c, ts in candidates.items()}
    # the fastest among those clearly faster than the baseline, if any: a lower but noisier
    # estimate must not hide a split that clearly wins
    clear = [c for c, iv in changes.items() if iv.high < 0] or list(changes)
    best = min(clear, key=lambda c: changes[c].estimate)
    top = changes[best]
    if top.high < 0:  # the fastest clearly beats the baseline
        contenders = [
            c
            for c, iv in changes.items()
            if iv.high < 0 and (c == best or paired_change(candidates[best], candidates[c]).low <= 0)
        ]
        keep = min(contenders, key=lambda c: simplicity(bounds[c]))
        iv, ts = changes[keep], candidates[keep]
        text = f"kept {bounds_text(bounds[keep])}: {pct(iv.estimate)} vs baseline ({ci_text(iv)})"
        if keep == REFERENCE:
            text += ", which is ISO 50/50"
        elif REFERENCE in candidates:
            text += f", {pct(paired_change(candidates[REFERENCE], ts).estimate)} vs 50/50"
        text += f", won {wins(baseline, ts)} of {len(ts)} paired repeats"
        if keep != best:
            apart = paired_change(candidates[best], ts)
            text += (
                f"; simpler than {bounds_text(bounds[best])}, which it trails by {pct(apart.estimate)} "
                f"({ci_text(apart)}): within noise"
            )
        return Verdict(keep=keep, ms=typical(ts), sentence=text, settled=True, changes=changes, outcome=KEPT)
    label = bounds_text(bounds[best])
    if top.low > 0:
        text = f"kept no split: every split was slower; the best, {label}, by {pct(top.estimate)} ({ci_text(top)})"
        return Verdict(keep=None, ms=base_ms, sentence=text, settled=True, changes=changes, outcome=SLOWER)
    text = f"kept no split: the best candidate, {label}, changed the time by {pct(top.estimate)} ({ci_text(top)})"
    text += f" over {top.n} paired repeats: within noise"
    return Verdict(keep=None, ms=base_ms, sentence=text, settled=False, changes=changes, outcome=NOISE)


def _decide_predicted(baseline: float, candidates: dict[str, float], bounds: dict[str, list[int]]) -> Verdict:
    changes = {
        c: Interval(estimate=ms / baseline - 1, low=ms / baseline - 1, high=ms / baseline - 1, n=1)
        for c, ms in candidates.items()
    }
    best = min(candidates, key=candidates.get)
    change = changes[best].estimate
    if change > -MODEL_MIN_GAIN:
        did = f"saves {-change:.1%}" if change < 0 else f"is {change:.1%} slower"
        text = (
            f"kept no split: the cost model's best, {bounds_text(bounds[best])}, {did}; "
            f"a split must save {MODEL_MIN_GAIN:.0%}"
        )
        outcome = SMALL if change < 0 else SLOWER
        return Verdict(keep=None, ms=baseline, sentence=text, settled=True, changes=changes, outcome=outcome)
    enough = baseline * (1 - MODEL_MIN_GAIN)  # a tie must still save what a split must
    ties = [c for c, ms in candidates.items() if ms <= min(candidates[best] * (1 + MODEL_TIE), enough)]
    keep = min(ties, key=lambda c: simplicity(bounds[c]))
    text = f"kept {bounds_text(bounds[keep])}: {pct(changes[keep].estimate)} vs baseline, predicted by the cost model"
    if REFERENCE in candidates and keep != REFERENCE:
        text += f", {pct(candidates[keep] / candidates[REFERENCE] - 1)} vs 50/50"
    if keep != best:
        text += f"; simpler than {bounds_text(bounds[best])}, within {MODEL_TIE:.1%} of it"
    return Verdict(keep=keep, ms=candidates[keep], sentence=text, settled=True, changes=changes, outcome=KEPT)
