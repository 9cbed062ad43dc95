"""After a study: re-measure its best splits and ISO 50/50 beside the baseline, interleaved, until
the evidence decides (core.decide) or a repeat cap is hit, and turn the verdict into the plan's
bucket, its decision sentence included.

50/50 is always a candidate: it is the split peers use, so a plan must never lose to it because
the search's noisy trial times ranked it below its true place. With the measured objective the
same rounds also time the baseline's compute alone and its all-reduces alone, so every decision
can say how much communication there was to hide.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from isotune.core.chunking import ratios_of
from isotune.core.cost import predict_serial
from isotune.core.decide import Verdict, decide
from isotune.core.plan import Bucket
from isotune.core.stats import Interval, typical
from isotune.engine.executor import COMM_ONLY, COMPUTE_ONLY
from isotune.tune import studies
from isotune.tune.config import SearchConfig
from isotune.tune.trials import best_splits, iso5050

VALIDATE_TOP = 3  # best distinct splits of the study re-measured beside the baseline
START, STEP, CAP = 2, 1, 4  # validation repeats: first round, each extra round, cap (x --repeats)

COMM_CPU = "comm_cpu"  # key of what validate returns on CPU ranks: the comm-only run's CPU ms (one per call)

Validate = Callable[[int, dict, int], dict[str, list[float]]]


def candidates(cfg: SearchConfig, study: optuna.Study, s: int) -> dict[str, list[int]]:
    cands = {f"c{i}": b for i, b in enumerate(best_splits(study, VALIDATE_TOP))}
    half = iso5050(cfg, s)
    if half:
        cands = {"iso5050": half} | {n: b for n, b in cands.items() if b != half}
    return cands


def validated_bucket(
    cfg: SearchConfig,
    study: optuna.Study,
    s: int,
    span: tuple[int, int],
    validate: Validate,
    stopped: str,
    say: Callable[[str], None] = lambda line: None,
) -> tuple[Bucket, Verdict]:
    """`validate(seq_len, variants, repeats)` measures variants (name -> bounds, or (bounds,
    mode)) interleaved and returns each one's per-repeat ms (the cost model: one prediction).
    A study that stored a validation of these very candidates (a finished search run again)
    gives its times back instead, said through `say`, unless cfg.revalidate."""
    cands = candidates(cfg, study, s)
    variants: dict = {"baseline": [0, s]} | cands
    measured = cfg.objective == "measured"
    if measured:
        variants |= {"compute": ([0, s], COMPUTE_ONLY)}
        if cfg.tp > 1:  # one rank has no all-reduce: a comm-only prefill would time bookkeeping
            variants |= {"comm": ([0, s], COMM_ONLY)}
    # measured rounds are worth keeping; the cost model's are one prediction each, and would go
    # stale with a new profile that the study's name does not see
    key = studies.validation_key(variants, cfg.repeats)
    stored = None if cfg.revalidate or not measured else studies.stored_validation(study, key)
    if stored is not None:
        times = stored
        say(
            f"validation reused: the {len(times['baseline'])} rounds this study stored for these candidates "
            "(--revalidate measures them again)"
        )
        verdict = decide(times["baseline"], {c: times[c] for c in cands}, cands)
    else:
        times, verdict = _measure(cfg, s, variants, cands, validate)
        if measured:
            studies.store_validation(study, key, times)
    base_ms = typical(times["baseline"])
    if measured:
        compute_ms, comm_ms = typical(times["compute"]), typical(times["comm"]) if "comm" in times else 0.0
    else:
        compute_ms, comm_ms = predict_serial(cfg.profile, s, cfg.sim_layers, pack=cfg.pack_for(s))
    comm_cpu_ms = typical(times[COMM_CPU]) if COMM_CPU in times else None
    if cfg.tp == 1:  # (and no comm-only run, so no CPU of one either)
        verdict.sentence += "; one rank: no all-reduce for a split to hide"
        comm_ms = 0.0
    else:
        verdict.sentence += f"; all-reduces are {comm_ms / base_ms:.0%} of the unsplit prefill"
    if comm_cpu_ms is not None:
        share = comm_cpu_ms / base_ms
        verdict.sentence += f" ({share:.0%} of it CPU work on the compute's cores, which no overlap hides)"
    bounds = cands[verdict.keep] if verdict.keep else [0, s]
    half = verdict.changes.get("iso5050")
    bucket = Bucket(
        min_tokens=span[0],
        max_tokens=span[1],
        chunks=len(bounds) - 1,
        ratios=ratios_of(bounds),
        plan_ms=round(verdict.ms, 3),
        baseline_ms=round(base_ms, 3),
        seq_len=s,
        trials=studies.counts(study)["spent"],
        iso5050_ms=round(typical(times["iso5050"]), 3) if "iso5050" in times else None,
        decision=verdict.sentence,
        outcome=verdict.outcome,
        stopped=stopped,
        vs_baseline=_rounded(verdict.changes[verdict.keep]) if verdict.keep else None,
        iso5050_vs_baseline=_rounded(half) if half else None,
        compute_ms=round(compute_ms, 3),
        comm_ms=round(comm_ms, 3),
        comm_cpu_ms=round(comm_cpu_ms, 3) if comm_cpu_ms is not None else None,
        repeats=len(times["baseline"]),
    )
    return bucket, verdict


def _measure(
    cfg: SearchConfig, s: int, variants: dict, cands: dict[str, list[int]], validate: Validate
) -> tuple[dict[str, list[float]], Verdict]:
    """Rounds of interleaved repeats until the verdict is settled or the cap is reached."""
    times = validate(s, variants, START * cfg.repeats)
    while True:
        verdict = decide(times["baseline"], {c: times[c] for c in cands}, cands)
        n = len(times["baseline"])
        if verdict.settled or n == 1 or n >= CAP * cfg.repeats:
            return times, verdict
        more = validate(s, variants, min(STEP * cfg.repeats, CAP * cfg.repeats - n))
        times = {name: ts + more[name] for name, ts in times.items()}


def _rounded(iv: Interval) -> list[float]:
    """[estimate, low, high] of a relative change, rounded for the plan file."""
    return [round(x, 5) for x in iv.triple()]
