"""One length's study: seed it, draw splits, measure them, and stop, saying why.

Each study starts with the baseline (k=1), ISO 50/50 and, given a profile, the cost model's best.
A draw that rounds to a split already measured is told its time and costs no budget. The study
stops when it has measured its trials, when its time is up, or when the sampler has converged
(it keeps redrawing measured splits); the reason goes to the user and into the plan.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from isotune.core.cost import simulate
from isotune.core.space import grid, local_best, params_for, suggest_bounds, try_bounds
from isotune.tune import studies
from isotune.tune.config import GRID, SearchConfig

FREE_DRAWS = 4  # stop after this many draws per budgeted trial, even if most repeated earlier splits


def iso5050(cfg: SearchConfig, seq_len: int) -> list[int] | None:
    """The paper's even two-way split, where the alignment and length allow one."""
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
    pack = cfg.pack_for(seq_len)
    return local_best(lambda b: simulate(cfg.profile, b, cfg.sim_layers, pack=pack), seq_len, cfg.max_chunks, cfg.align)


def _enqueue(study: optuna.Study, points: list[list[int]], align: int, tag: str) -> None:
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
        p = params_for(b, align)
        if tuple(b) not in done and p not in queued:
            study.enqueue_trial(p, user_attrs={"seed": tag})
            queued.append(p)


def run_study(
    cfg: SearchConfig,
    study: optuna.Study,
    seq_len: int,
    evaluate: Callable[[list[int], optuna.Trial], float],
    progress: Callable[[optuna.Study, Counter], None],
    deadline: float | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> tuple[str, bool]:
    """Run trials until the study has measured cfg.trials splits (every grid point for the grid
    sampler), counting other workers' trials too, or until `deadline` (time.monotonic()).
    Returns why it stopped, in words, and whether that was early (before its trials)."""
    if cfg.sampler == GRID:
        _enqueue(study, grid(seq_len, cfg.max_chunks, cfg.align), cfg.align, "grid")
    else:
        _enqueue(study, seeds(cfg, seq_len), cfg.align, "seed")
    cache = {
        tuple(t.user_attrs["bounds"]): t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "bounds" in t.user_attrs
    }
    while True:
        for line in studies.fail_stale(study):
            say(line)
        trials = study.get_trials(deepcopy=False)  # one snapshot for the counts and the stop line
        n = studies.counts(study, trials)
        progress(study, n)
        spent, draws = n["spent"], n[TrialState.COMPLETE] + n[TrialState.PRUNED]
        if cfg.sampler == GRID and not n[TrialState.WAITING]:
            return f"measured every grid point ({spent} splits)", False
        if cfg.sampler != GRID and spent + n[TrialState.RUNNING] >= cfg.trials:
            if spent >= cfg.trials:
                return f"measured its {cfg.trials} trials", False
            running = [t for t in trials if t.state == TrialState.RUNNING]
            return (
                f"measured {spent} of its {cfg.trials} trials; {len(running)} more "
                f"{'is' if len(running) == 1 else 'are'} running in other workers ({_running_owners(running)})",
                False,
            )
        if cfg.sampler != GRID and draws >= FREE_DRAWS * cfg.trials:
            return (
                f"stopped after {spent} of {cfg.trials} trials: the sampler converged "
                f"({draws} draws, the rest repeated splits already {'costed' if cfg.objective == 'model' else 'measured'})",
                True,
            )
        if deadline is not None and time.monotonic() >= deadline:
            return f"stopped after {spent} of {cfg.trials} trials: its share of --time-budget ran out", True
        trial = None
        try:  # once claimed the trial is RUNNING in the storage: any way out must finish it
            trial = studies.claim(study)  # (an interrupt inside claim() fails the trial it took)
            _run_trial(study, trial, seq_len, cfg, cache, evaluate, say)
        except BaseException:  # interrupted or crashed: the trial failed, finished ones stay
            if trial is not None:
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise


def _running_owners(running: list) -> str:
    """'trial 7 by host:pid, ...': who holds the running trials' slots."""
    return ", ".join(
        f"trial {t.number} by {t.user_attrs.get(studies.OWNER_ATTR, 'no recorded worker')}" for t in running
    )


def _run_trial(study, trial, seq_len: int, cfg: SearchConfig, cache: dict, evaluate, say) -> None:
    """Draw the trial's split, measure it (or reuse a measurement of the same boundaries) and
    tell the study."""
    bounds = suggest_bounds(trial, seq_len, cfg.max_chunks, cfg.align)
    trial.set_user_attr("bounds", bounds)
    if tuple(bounds) in cache:  # another draw that rounds to the same boundaries
        trial.set_user_attr("reused", True)
        study.tell(trial, cache[tuple(bounds)])
        return
    try:
        with studies.TrialBeat(trial):
            value = evaluate(bounds, trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        return
    cache[tuple(bounds)] = value  # a sound measurement even if its trial was failed meanwhile
    if study.tell(trial, value, skip_if_finished=True).state == TrialState.FAIL:
        say(
            f"trial {trial.number}'s result ({value:.2f} ms) was dropped: another worker failed it "
            "when its beats stopped reaching the storage"
        )


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
