"""`isotune search`: one Optuna study per prompt length over chunk counts and split ratios,
then a plan.

Measured objective (default): rank 0 owns the studies; for each trial it sends the split to
every rank (broadcast), all ranks run the real executor, and the slowest rank's time per repeat
comes back; repeats are reported as intermediate values so the pruner can stop hopeless
trials. Each study is seeded with the baseline (k=1), 50/50 and, given a profile, the cost
model's best. The best few splits are then re-measured interleaved with the baseline, and a
split is kept only when it beats the baseline beyond noise (a sign test over paired repeats).

Model objective: the same studies on the cost model alone, no ranks (plan for hardware you do
not have, in seconds).
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from isotune.core.cost import simulate
from isotune.core.plan import Bucket, Plan, bucket_ranges
from isotune.core.profile import Profile
from isotune.core.space import grid, local_best, params_for, ratios_of, suggest_ratios, try_bounds
from isotune.core.stats import typical
from isotune.tune import studies

MEASURED, MODEL = "measured", "model"
TPE, GRID = "tpe", "grid"
VALIDATE_TOP = 3  # best distinct splits re-measured beside the baseline
MIN_GAIN = 0.01  # a split must save at least this share of the baseline to be kept
MIN_WIN_SHARE = 0.75  # ... and win at least this share of the paired repeats
FREE_DRAWS = 4  # stop after this many draws per budgeted trial, even if most repeated earlier splits


@dataclass(kw_only=True)
class SearchConfig:
    model: str
    layers: int | None
    dtype: str
    seq_lens: list[int]
    trials: int
    max_chunks: int
    align: int
    objective: str
    sampler: str
    profile: Profile | None
    sim_layers: int  # layers the cost model simulates
    storage: str
    study_prefix: str
    out: str
    model_name: str
    fingerprint: str
    tp: int
    warmup: int
    repeats: int
    device: str
    threads: int
    seed: int
    plots_dir: str | None = None


def study_attrs(cfg: SearchConfig, seq_len: int) -> dict:
    """What a study was made with: resuming it with other settings would mix incomparable trials."""
    return {
        "fingerprint": cfg.fingerprint,
        "tp": cfg.tp,
        "dtype": cfg.dtype,
        "device": cfg.device,
        "align": cfg.align,
        "max_chunks": cfg.max_chunks,
        "objective": cfg.objective,
        "sampler": cfg.sampler,
        "seq_len": seq_len,
    }


def study_name(cfg: SearchConfig, seq_len: int) -> str:
    return f"{cfg.study_prefix}-s{seq_len}"


def open_studies(cfg: SearchConfig, storage=None) -> dict[int, optuna.Study]:
    """Open (or resume) every length's study; raises BadInput on a study made with other settings."""
    storage = storage or studies.open_storage(cfg.storage)
    out = {}
    for s in cfg.seq_lens:
        if cfg.sampler == GRID:
            sampler, pruner = optuna.samplers.TPESampler(seed=cfg.seed), optuna.pruners.NopPruner()
        else:
            # constant_liar keeps concurrent workers from proposing the same split
            sampler = optuna.samplers.TPESampler(
                seed=None if cfg.objective == MEASURED else cfg.seed,
                n_startup_trials=6,
                multivariate=True,
                group=True,
                constant_liar=True,
            )
            pruner = (
                optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
                if cfg.objective == MEASURED
                else optuna.pruners.NopPruner()
            )
        out[s] = studies.open_study(storage, study_name(cfg, s), study_attrs(cfg, s), sampler, pruner)
    return out


def _enqueue(study: optuna.Study, points: list[list[int]], tag: str) -> None:
    """Enqueue splits not yet tried (failed ones count as untried, so a resumed search redoes them)."""
    done = {
        tuple(t.user_attrs["bounds"])
        for t in study.get_trials(deepcopy=False)
        if "bounds" in t.user_attrs and t.state != TrialState.FAIL
    }
    queued = [
        t.system_attrs.get("fixed_params") for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    ]
    for b in points:
        p = params_for(b)
        if tuple(b) not in done and p not in queued:
            study.enqueue_trial(p, user_attrs={"seed": tag})
            queued.append(p)


def iso5050(cfg: SearchConfig, seq_len: int) -> list[int] | None:
    """The paper's even two-way split, where the settings allow one."""
    return try_bounds(seq_len, [0.5, 0.5], cfg.align) if cfg.max_chunks >= 2 else None


def seeds(cfg: SearchConfig, seq_len: int) -> list[list[int]]:
    pts = [[0, seq_len]]
    half = iso5050(cfg, seq_len)
    if half:
        pts.append(half)
    if cfg.profile is not None:
        pts.append(model_best(cfg, seq_len))
    return pts


def model_best(cfg: SearchConfig, seq_len: int) -> list[int]:
    return local_best(lambda b: simulate(cfg.profile, b, cfg.sim_layers), seq_len, cfg.max_chunks, cfg.align)


def run_study(
    cfg: SearchConfig,
    study: optuna.Study,
    seq_len: int,
    evaluate: Callable[[list[int], optuna.Trial], float],
    progress: Callable[[optuna.Study, Counter], None],
) -> None:
    """Run trials until the study has measured cfg.trials splits (every grid point for the grid
    sampler), counting other workers' trials too; draws that repeat a measured split are told
    its time and cost no budget."""
    if cfg.sampler == GRID:
        _enqueue(study, grid(seq_len, cfg.max_chunks, cfg.align), "grid")
    else:
        _enqueue(study, seeds(cfg, seq_len), "seed")
    cache = {
        tuple(t.user_attrs["bounds"]): t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "bounds" in t.user_attrs
    }
    while True:
        studies.fail_stale(study)
        n = studies.counts(study)
        progress(study, n)
        if cfg.sampler == GRID:
            if not n[TrialState.WAITING]:
                return
        elif n["spent"] + n[TrialState.RUNNING] >= cfg.trials:
            return
        elif n[TrialState.COMPLETE] + n[TrialState.PRUNED] >= FREE_DRAWS * cfg.trials:
            return  # the sampler keeps redrawing splits it has measured: it has converged
        trial = study.ask()
        trial.set_user_attr(studies.OWNER_ATTR, studies.owner())
        bounds = try_bounds(seq_len, suggest_ratios(trial, cfg.max_chunks), cfg.align)
        if bounds is None:  # a chunk below the alignment: not a schedule
            trial.set_user_attr("infeasible", True)
            study.tell(trial, state=TrialState.PRUNED)
            continue
        trial.set_user_attr("bounds", bounds)
        if tuple(bounds) in cache:  # another draw that rounds to the same boundaries
            trial.set_user_attr("reused", True)
            study.tell(trial, cache[tuple(bounds)])
            continue
        try:
            value = evaluate(bounds, trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        except BaseException:  # interrupted or crashed: the trial failed, finished ones stay
            study.tell(trial, state=TrialState.FAIL)
            raise
        study.tell(trial, value)
        cache[tuple(bounds)] = value


def best_splits(study: optuna.Study, top: int) -> list[list[int]]:
    """The `top` fastest distinct multi-chunk splits among the finished trials."""
    done = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "bounds" in t.user_attrs),
        key=lambda t: t.value,
    )
    out: list[list[int]] = []
    for t in done:
        b = t.user_attrs["bounds"]
        if len(b) > 2 and b not in out:
            out.append(b)
    return out[:top]


def decide(baseline: list[float], candidates: dict[str, list[float]]) -> tuple[str | None, float]:
    """The candidate to keep (or None: stay unsplit) from paired, interleaved repeats, and its
    typical ms. It must be the fastest, save >= MIN_GAIN of the baseline and win at least
    MIN_WIN_SHARE of the repeats."""
    if not candidates:
        return None, typical(baseline)
    name = min(candidates, key=lambda c: typical(candidates[c]))
    ts = candidates[name]
    med, base = typical(ts), typical(baseline)
    wins = sum(t < b for t, b in zip(ts, baseline, strict=True)) / len(ts)
    if med < base * (1 - MIN_GAIN) and wins >= MIN_WIN_SHARE:
        return name, med
    return None, base


def search_all(
    cfg: SearchConfig,
    evaluate_for: Callable[[int], Callable[[list[int], optuna.Trial], float]],
    validate: Callable[[int, dict[str, list[int]]], dict[str, list[float]]],
    topology: dict,
    software: dict,
) -> Plan:
    """Every length's study, then the plan. `validate(seq_len, variants)` returns per-repeat
    times of each variant measured interleaved (the cost model returns one prediction each)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from isotune.viz.tables import console

    all_studies = open_studies(cfg)
    buckets = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console(), transient=False) as bar:
        for (lo, hi), s in zip(bucket_ranges(cfg.seq_lens), cfg.seq_lens, strict=True):
            study = all_studies[s]
            task = bar.add_task(f"{s} tokens", total=None if cfg.sampler == GRID else cfg.trials)

            def progress(st: optuna.Study, n: Counter, s=s, task=task) -> None:
                finished = n["spent"] if cfg.sampler != GRID else n[TrialState.COMPLETE] + n[TrialState.PRUNED]
                best = _best_text(st)
                total = finished + n[TrialState.WAITING] if cfg.sampler == GRID else cfg.trials
                bar.update(task, completed=finished, total=total, description=f"{s} tokens{best}")

            run_study(cfg, study, s, evaluate_for(s), progress)  # its last progress call shows the final state
            buckets.append(validated_bucket(cfg, study, s, (lo, hi), validate))
    return Plan(
        model={"name": cfg.model_name, "fingerprint": cfg.fingerprint, "layers": cfg.sim_layers},
        topology=topology,
        software=software,
        align=cfg.align,
        buckets=buckets,
        study={
            "storage": cfg.storage,
            "name": cfg.study_prefix,
            "trials": cfg.trials,
            "objective": cfg.objective,
            "sampler": cfg.sampler,
            "max_chunks": cfg.max_chunks,
        },
    )


def validated_bucket(
    cfg: SearchConfig,
    study: optuna.Study,
    s: int,
    span: tuple[int, int],
    validate: Callable[[int, dict[str, list[int]]], dict[str, list[float]]],
) -> Bucket:
    """Re-measure the best few splits and 50/50 beside the baseline, interleaved, and keep the
    winner only beyond noise. 50/50 is measured anyway and is the split peers use: a plan should
    never lose to it because the search's noisy trial times ranked it below its true place."""
    cands = {f"c{i}": b for i, b in enumerate(best_splits(study, VALIDATE_TOP))}
    half = iso5050(cfg, s)
    if half:
        cands = {"iso5050": half} | {n: b for n, b in cands.items() if b != half}
    times = validate(s, {"baseline": [0, s]} | cands)
    baseline = times.pop("baseline")
    half_ms = times.get("iso5050")
    keep, ms = decide(baseline, times)
    bounds = cands[keep] if keep else [0, s]
    return Bucket(
        min_tokens=span[0],
        max_tokens=span[1],
        chunks=len(bounds) - 1,
        ratios=ratios_of(bounds),
        plan_ms=round(ms, 3),
        baseline_ms=round(typical(baseline), 3),
        seq_len=s,
        trials=studies.counts(study)["spent"],
        iso5050_ms=round(typical(half_ms), 3) if half_ms else None,
    )


def _best_text(study: optuna.Study) -> str:
    try:
        t = study.best_trial
    except ValueError:
        return ""
    b = t.user_attrs.get("bounds")
    split = "/".join(f"{r:.2f}" for r in ratios_of(b)) if b else "?"
    return f": best {t.value:.1f} ms, {len(b) - 1 if b else '?'} chunks ({split})"


def install_sigterm() -> None:
    """A launcher stops ranks with SIGTERM: turn it into KeyboardInterrupt so rank 0 can mark its
    running trial failed before it exits."""

    def interrupt(*_) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
