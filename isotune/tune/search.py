"""`isotune search`: one Optuna study per prompt length over chunk counts and split ratios,
then a plan.

Measured objective (default): rank 0 owns the studies; for each trial it sends the split to
every rank (broadcast), all ranks run the real executor, and the slowest rank's time per repeat
comes back; repeats are reported as intermediate values so the pruner can stop hopeless
trials (tune.trials). The best few splits are then re-measured interleaved with the baseline
until a paired confidence interval decides (tune.validate, core.decide). Each study's stop and
each bucket's decision are printed in one line and recorded in the plan.

Model objective: the same studies on the cost model alone, no ranks (plan for hardware you do
not have, in seconds).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from isotune.core.credentials import redact
from isotune.core.decide import bounds_text
from isotune.core.plan import Plan, bucket_ranges
from isotune.core.space import SPACE_VERSION
from isotune.tune import studies
from isotune.tune.config import GRID, MEASURED, SearchConfig
from isotune.tune.storage import open_storage
from isotune.tune.trials import run_study
from isotune.tune.validate import Validate, validated_bucket


def study_attrs(cfg: SearchConfig, seq_len: int) -> dict:
    """What a study was made with: resuming it with other parameters would mix incomparable trials."""
    return (
        {
            "fingerprint": cfg.fingerprint,
            "tp": cfg.tp,
            "dtype": cfg.dtype,
            "device": cfg.device,
            "align": cfg.align,
            "max_chunks": cfg.max_chunks,
            "objective": cfg.objective,
            "sampler": cfg.sampler,
            "seq_len": seq_len,
            "space": SPACE_VERSION,
        }
        | ({"compile": True} if cfg.compile else {})
        | ({"max_ctas": cfg.comm_ctas} if cfg.comm_ctas else {})
        | ({"link": cfg.link} if cfg.link else {})
        | ({"pack": cfg.pack} if cfg.pack else {})
    )
    # (each only when set: studies made before it stay valid)


def study_name(cfg: SearchConfig, seq_len: int) -> str:
    return f"{cfg.study_prefix}-s{seq_len}"


def open_studies(cfg: SearchConfig, storage=None) -> dict[int, optuna.Study]:
    """Open (or resume) every length's study; raises BadInput on a study made with other parameters."""
    storage = storage or open_storage(cfg.storage)
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


def search_all(
    cfg: SearchConfig,
    evaluate_for: Callable[[int], Callable[[list[int], optuna.Trial], float]],
    validate: Validate,
    topology: dict,
    software: dict,
) -> Plan:
    """Every length's study and validation, then the plan. `validate(seq_len, variants,
    repeats)` returns each variant's per-repeat ms, measured interleaved (the cost model: one
    prediction each). Says, per length, why the study stopped and what validation kept."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from isotune.viz.progress import progress_bar
    from isotune.viz.tables import console

    all_studies = open_studies(cfg)
    buckets = []
    trials_s = 0.0  # time spent in the studies: the budget is theirs, validation comes on top
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress_bar(*columns, console=console()) as bar:
        for i, ((lo, hi), s) in enumerate(zip(bucket_ranges(cfg.seq_lens), cfg.seq_lens, strict=True)):
            study = all_studies[s]
            task = bar.add_task(f"{s} tokens", total=None if cfg.sampler == GRID else cfg.trials)

            def progress(st: optuna.Study, n: Counter, s=s, task=task) -> None:
                finished = n["spent"] if cfg.sampler != GRID else n[TrialState.COMPLETE] + n[TrialState.PRUNED]
                total = finished + n[TrialState.WAITING] if cfg.sampler == GRID else cfg.trials
                bar.update(task, completed=finished, total=total, description=f"{s} tokens{_best_text(st)}")

            deadline, start = None, time.monotonic()
            if cfg.time_budget_s is not None:  # an even share of what is left; unused time passes on
                deadline = start + max(0.0, cfg.time_budget_s - trials_s) / (len(cfg.seq_lens) - i)
            say = lambda line, s=s: bar.console.print(f"{s} tokens: {line}")  # noqa: E731
            already = studies.counts(study)["spent"]
            if already:  # a rerun, or another worker's trials: said, since it changes what is left to do
                left = max(0, cfg.trials - already) if cfg.sampler != GRID else "the rest of the grid"
                say(f"resuming study {study.study_name}: {already} trials already measured, {left} to go")
            stopped, early = run_study(cfg, study, s, evaluate_for(s), progress, deadline, say)
            trials_s += time.monotonic() - start
            if early:  # the bar stops where the study did, and says so
                done = studies.counts(study)["spent"]
                bar.update(task, total=done, completed=done)
                bar.console.print(f"{s} tokens: study {stopped}")
            bar.stop_task(task)
            searched = f"{s} tokens{_best_text(study)}"
            bar.update(task, description=f"{searched}; validating")
            bucket, verdict = validated_bucket(cfg, study, s, (lo, hi), validate, stopped, say)
            bar.update(task, description=searched)
            bar.console.print(f"{s} tokens: {verdict.sentence}")
            buckets.append(bucket)
    return Plan(
        model={"name": cfg.model_name, "fingerprint": cfg.fingerprint, "layers": cfg.sim_layers},
        topology=topology,
        software=software,
        align=cfg.align,
        buckets=buckets,
        study={
            "storage": redact(cfg.storage),  # a plan is shared and kept: never its password
            "name": cfg.study_prefix,
            "trials": cfg.trials,
            "objective": cfg.objective,
            "sampler": cfg.sampler,
            "max_chunks": cfg.max_chunks,
            "time_budget_s": cfg.time_budget_s,
        }
        | ({"pack": cfg.pack} if cfg.pack else {}),  # searched on packs of prompts this long
    )


def _best_text(study: optuna.Study) -> str:
    """The fastest trial so far: what the search has seen, not yet what validation keeps."""
    try:
        t = study.best_trial
    except ValueError:
        return ""
    b = t.user_attrs.get("bounds")
    split = bounds_text(b) if b else "?"
    # short enough for a 100-column terminal with the bar, the count and the clock beside it
    return f": search's best {t.value:.1f} ms, {split}"


def install_sigterm() -> None:
    """A launcher stops ranks with SIGTERM: turn it into KeyboardInterrupt so rank 0 can mark its
    running trial failed before it exits."""

    def interrupt(*_) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
