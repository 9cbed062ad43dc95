"""Optuna studies for `isotune search`, on a storage (tune.storage): open (or resume) one study
per prompt length, refuse a study made with other parameters, let several workers take trials,
fail trials whose worker died (a SIGKILLed search leaves its running trial behind; a worker on
another host is known dead by its trial's heartbeat), and keep each length's validation rounds.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections import Counter
from datetime import datetime
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from isotune.core.credentials import redact
from isotune.core.errors import BadInput, first_line
from isotune.core.heartbeat import Flatline, Heartbeat

optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress and tables say it better
# TPE's `group` (conditional ratios per chunk count) is marked experimental; its warning is noise here
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

OWNER_ATTR = "owner"
CLAIM_PREFIX = "isotune_claim:"  # + "host:pid": a worker taking a queued trial, before it is named owner
BEAT_ATTR = "isotune_beat"  # beat_mark(): the count of its worker's beats, their period, its process
TRIAL_BEAT_S = float(os.environ.get("ISOTUNE_TRIAL_BEAT_S", "30"))
STALE_BEATS = 10  # beats missed before a running trial counts as its worker's death
MADE_WITH_ATTR = "isotune_settings"  # the attribute's name in storages predates the word
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
VALIDATION_ATTR = "isotune_validation"  # {key, times}: the last validation's per-repeat ms


def open_study(storage, name: str, attrs: dict, sampler=None, pruner=None) -> optuna.Study:
    """Create or resume study `name`; what it is made with (attrs) must match what it was made with."""
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="minimize", sampler=sampler, pruner=pruner, load_if_exists=True
        )
    except Exception as e:
        raise BadInput(f"study {name} cannot be opened ({redact(first_line(e))}): check --storage") from None
    made = study.user_attrs.get(MADE_WITH_ATTR)
    if made is None:  # one attribute, one write: a concurrent worker never sees half of them
        study.set_user_attr(MADE_WITH_ATTR, attrs)
        return study
    if made.get("space") != attrs.get("space"):  # a setting no flag can match: say what to do instead
        raise BadInput(
            f"study {name} was drawn by an older isotune, whose split parameters mean other splits: "
            "give a new --study-name or --storage to start afresh"
        )
    diff = [f"{k} {made.get(k)!r} (now {v!r})" for k, v in attrs.items() if made.get(k) != v]
    if diff:
        raise BadInput(
            f"study {name} in this storage was made with {', '.join(diff)}: "
            "use the same flags to resume, or another --study-name/--storage"
        )
    return study


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_space() -> str | None:
    """This process's pid namespace ('pid:[4026531836]'), None off Linux. Containers that share a
    hostname (host networking, common for GPU boxes) each have their own: a pid seen in another
    is not a process here."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22), None where
    that cannot be read: a pid reused by a new process has another start."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # fields after the command name start at 3
    except (OSError, IndexError, ValueError):
        return None


def beat_mark(n: int) -> dict:
    """Beat n of this worker: its count, its period (workers may run with other periods), and
    what tells its process apart on its host (pid namespace, start time)."""
    return {"n": n, "every_s": TRIAL_BEAT_S, "pid_space": _pid_space(), "started": _started(os.getpid())}


# (study, trial id[, claimant]) -> (the beat count last seen, when it changed, on this host's
# clock): a remote worker's silence is timed here, so hosts' clocks need not agree
_SEEN: dict[tuple, tuple[int, float]] = {}


def fail_stale(study: optuna.Study) -> list[str]:
    """Mark FAIL the running trials whose worker is gone: on this host (and in this pid space),
    its process has ended or its pid now names a process started later; on another, its beat
    count has not moved for STALE_BEATS of its beats. A trial taken from
    the queue by a worker that died before naming itself is judged by its claimants (claim()):
    gone when every one is. With no worker recorded at all (an older isotune's, killed inside
    ask()), STALE_BEATS beats of wall clock after it started. Returns a line per trial failed,
    saying why. Until then a running trial holds its slot of the budget, so a dead worker's
    would hold it for good."""
    host, now, out = socket.gethostname(), time.monotonic(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        key, attrs = (study.study_name, t._trial_id), t.user_attrs  # noqa: SLF001
        claims = _claims(attrs)
        if OWNER_ATTR in attrs:
            why = _gone(key, str(attrs[OWNER_ATTR]), attrs.get(BEAT_ATTR), host, now)
        elif claims:  # taken, not yet named: dead only if whoever may have taken it is
            whys = [_gone((*key, who), who, beat, host, now) for who, beat in claims.items()]
            why = None if None in whys else "; ".join(whys)
        else:  # the writer's local time (naive): right unless worker hosts are set to other zones
            started = t.datetime_start.astimezone() if t.datetime_start else datetime.now().astimezone()
            ran = (datetime.now().astimezone() - started).total_seconds()
            why = f"it has run {ran:.0f} s with no worker recorded" if ran > STALE_BEATS * TRIAL_BEAT_S else None
        if why is not None and fail_trial(study, t._trial_id):  # noqa: SLF001
            out.append(f"trial {t.number} failed: {why}; its slot goes to a new trial")
    return out


def _claims(attrs: dict) -> dict:
    """A trial's live claims (claim()): worker "host:pid" -> its beat mark; withdrawn ones left out."""
    return {k.removeprefix(CLAIM_PREFIX): v for k, v in attrs.items() if k.startswith(CLAIM_PREFIX) and v}


def _gone(key: tuple, who: str, beat, host: str, now: float) -> str | None:
    """Why worker `who` ("host:pid") is known dead, or None while it may be alive."""
    name, _, pid = who.rpartition(":")
    mark, here = beat if isinstance(beat, dict) else {}, _pid_space()
    if name == host and pid.isdigit() and mark.get("pid_space", here) == here:
        # here the process table is the truth, not the beat (an older isotune's beat names no space)
        started = mark.get("started")
        if _alive(int(pid)) and (started is None or _started(int(pid)) in (None, started)):
            return None
        return f"its worker (pid {pid} here) is gone"
    if not isinstance(beat, dict):  # no beat (an older isotune's worker): cannot tell
        return None
    n = int(beat["n"])
    if _SEEN.get(key, (None,))[0] != n:  # a remote worker's silence is timed on this host's clock
        _SEEN[key] = (n, now)
        return None
    silent, every = now - _SEEN[key][1], float(beat["every_s"])
    if silent <= STALE_BEATS * every:
        return None
    return f"its worker ({who}) has not beaten for {silent:.0f} s (every {every:g} s while alive)"


def claim(study: optuna.Study) -> optuna.Trial:
    """study.ask(), except that a trial is never RUNNING in the storage with no worker named:
    ask() makes a trial RUNNING in one write and the owner took another, and a worker SIGKILLed
    between the two left a trial no one could tell was dead, holding its slot of the budget for
    good. A queued (WAITING) trial gets this worker's own claim key before the compare-and-set
    that takes it (a worker that loses the race withdraws its key, and never writes over the
    winner's name); the owner is written last. A new trial is written with its owner. Ctrl-C
    while taking a trial fails it, even inside a write that landed before the interrupt."""
    storage, me, first = study._storage, owner(), beat_mark(0)  # noqa: SLF001
    study._thread_local.cached_all_trials = None  # noqa: SLF001 - as ask() does: samplers see the storage afresh
    taken = trying = None
    try:
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            try:
                storage.set_trial_user_attr(t._trial_id, CLAIM_PREFIX + me, first)  # noqa: SLF001
                trying = t._trial_id  # noqa: SLF001
                if storage.set_trial_state_values(trying, TrialState.RUNNING):
                    taken = trying
                    break
                trying = None
                storage.set_trial_user_attr(t._trial_id, CLAIM_PREFIX + me, None)  # noqa: SLF001 - lost the race
            except UpdateFinishedTrialError:
                trying = None
                continue
        if taken is None:
            template = FrozenTrial(
                number=-1, trial_id=-1, state=TrialState.RUNNING, value=None, values=None,
                datetime_start=datetime.now(), datetime_complete=None, params={}, distributions={},
                user_attrs={BEAT_ATTR: first, OWNER_ATTR: me}, system_attrs={}, intermediate_values={},
            )  # fmt: skip
            taken = storage.create_new_trial(study._study_id, template_trial=template)  # noqa: SLF001
        else:
            storage.set_trial_user_attr(taken, BEAT_ATTR, first)
            storage.set_trial_user_attr(taken, OWNER_ATTR, me)  # last: until it lands the claim names this worker
        return optuna.Trial(study, taken)
    except BaseException:  # Ctrl-C while taking it: the trial is this worker's to fail
        if taken is None:  # interrupted inside a write that may have landed: whose trial is it?
            taken = _interrupted_take(study, me, trying)
        if taken is not None:
            fail_trial(study, taken)
        raise


def _interrupted_take(study: optuna.Study, me: str, trying: int | None) -> int | None:
    """The trial an interrupted claim() may have taken: one of its compare-and-set (RUNNING, no
    owner, no claim but this worker's) or a new trial written in this worker's name."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if t._trial_id == trying and OWNER_ATTR not in attrs and set(_claims(attrs)) == {me}:  # noqa: SLF001
            return trying
        if trying is None and attrs.get(OWNER_ATTR) == me:
            return t._trial_id  # noqa: SLF001
    return None


def fail_trial(study: optuna.Study, trial_id: int) -> bool:
    """FAIL a running trial; False if it had finished meanwhile (told, or failed by another worker)."""
    try:
        study._storage.set_trial_state_values(trial_id, TrialState.FAIL)  # noqa: SLF001 - no public API
    except UpdateFinishedTrialError:
        return False
    return True


def stamp(trial: optuna.Trial, n: int) -> None:
    """Beat n of the trial's worker, with its period (workers may be started with other periods)."""
    trial.set_user_attr(BEAT_ATTR, beat_mark(n))


class TrialBeat(Heartbeat):
    """While a trial is measured, its worker stamps it every TRIAL_BEAT_S (beat 0 is stamped as
    the trial is claimed), so workers on other hosts can tell a long trial from one whose worker
    died. A context manager: no stamp lands after it exits."""

    def __init__(self, trial: optuna.Trial):
        def beat(n: int) -> None:
            try:
                stamp(trial, n)
            except UpdateFinishedTrialError:  # another worker failed it: nothing left to stamp
                raise Flatline from None

        super().__init__(beat, TRIAL_BEAT_S)


FREE_ATTRS = ("reused", "infeasible")  # trials that cost no measurement


def counts(study: optuna.Study, trials: list | None = None) -> Counter:
    """Trials by state, plus "spent": finished trials that measured something (a draw that
    repeats an earlier split or is no valid split costs nothing, so it does not use up budget)."""
    n: Counter = Counter()
    for t in study.get_trials(deepcopy=False) if trials is None else trials:
        n[t.state] += 1
        if t.state in FINISHED and not any(t.user_attrs.get(a) for a in FREE_ATTRS):
            n["spent"] += 1
    return n


def validation_key(variants: dict, repeats: int) -> dict:
    """What a validation measured, as the storage gives it back (JSON: tuples become lists)."""
    return json.loads(json.dumps({"variants": variants, "repeats": repeats}))


def stored_validation(study: optuna.Study, key: dict) -> dict[str, list[float]] | None:
    """The per-repeat times the study stored for a validation of exactly `key`, or None."""
    got = study.user_attrs.get(VALIDATION_ATTR)
    return got["times"] if isinstance(got, dict) and got.get("key") == key else None


def store_validation(study: optuna.Study, key: dict, times: dict[str, list[float]]) -> None:
    """Kept with the study, so a finished search run again (the plan lost, a flag of the plan's
    changed) decides from these rounds instead of measuring them again."""
    study.set_user_attr(VALIDATION_ATTR, {"key": key, "times": times})
