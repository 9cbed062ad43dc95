"""Study settings on resume: a study drawn by an older isotune's search space is refused with
what to do, not with a setting no flag can match. Running trials of dead workers: one whose
heartbeat stopped (a worker on another host) gives its slot back; a live one keeps it."""

import socket
import subprocess
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from isotune.core.errors import BadInput
from isotune.tune import studies
from isotune.tune.storage import open_storage
from isotune.tune.studies import (
    BEAT_ATTR,
    MADE_WITH_ATTR,
    OWNER_ATTR,
    TrialBeat,
    fail_stale,
    fail_trial,
    open_study,
    owner,
    stamp,
)
from isotune.tune.trials import run_study


def test_a_study_from_an_older_search_space_says_to_start_afresh():
    storage = optuna.storages.InMemoryStorage()
    old = optuna.create_study(storage=storage, study_name="s512")
    old.set_user_attr(MADE_WITH_ATTR, {"seq_len": 512})  # no "space": written before space 2
    with pytest.raises(BadInput, match="drawn by an older isotune.*new --study-name or --storage"):
        open_study(storage, "s512", {"seq_len": 512, "space": 2})
    # the same settings resume
    assert open_study(storage, "s1024", {"seq_len": 1024, "space": 2}).study_name == "s1024"
    assert open_study(storage, "s1024", {"seq_len": 1024, "space": 2}).user_attrs[MADE_WITH_ATTR]["space"] == 2


class _Clock:
    """The monotonic clock fail_stale reads, moved only by the test: a remote worker's silence
    is exactly what the test says it is, however slow the machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr(studies, "time", SimpleNamespace(monotonic=c.monotonic))
    monkeypatch.setattr(studies, "_SEEN", {})  # silences are timed from this test's first look
    return c


def test_a_running_trial_whose_heartbeat_stopped_is_failed_with_a_line(tmp_path, monkeypatch, clock):
    monkeypatch.setattr(studies, "TRIAL_BEAT_S", 3.0)  # stale after 10 beats: 30 s
    storage = open_storage(f"journal:{tmp_path / 's.log'}")  # the real journal file, as search uses
    study = optuna.create_study(storage=storage, study_name="s")
    dead, alive, here, old = (study.ask() for _ in range(4))
    for t in (dead, alive):
        t.set_user_attr(OWNER_ATTR, "gpu-node-7:4242")  # another host: no process to look up
        stamp(t, 0)
    here.set_user_attr(OWNER_ATTR, owner())  # this process: alive, whatever its beat says
    stamp(here, 0)
    old.set_user_attr(OWNER_ATTR, "gpu-node-7:4243")  # no beat at all (an older isotune): left alone
    assert fail_stale(study) == []  # first sight: silence is timed from here, on this host's clock
    clock.now += 30
    stamp(alive, 1)  # the live worker beat meanwhile; the dead one did not
    assert fail_stale(study) == []  # 10 beats of silence exactly: not yet past the limit
    clock.now += 1
    assert fail_stale(study) == [
        f"trial {dead.number} failed: its worker (gpu-node-7:4242) has not beaten for 31 s "
        "(every 3 s while alive); its slot goes to a new trial"
    ]
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.RUNNING]
    assert not fail_trial(study, dead._trial_id)  # a second worker failing it too: no error, no line
    clock.now += 1000  # once the live worker stops beating too, its trial goes the same way
    assert [line.split(":")[0] for line in fail_stale(study)] == [f"trial {alive.number} failed"]


def test_a_trials_beat_runs_while_it_is_measured_and_stops_with_it(tmp_path, monkeypatch):
    """TrialBeat stamps its trial from a thread, beat 1, 2, ... with its period, until the block
    ends: leaving it joins the thread, so no stamp can land after the trial is told. A trial
    another worker failed ends its beat by itself."""
    monkeypatch.setattr(studies, "TRIAL_BEAT_S", 0.01)
    real, beats, enough = studies.stamp, [], threading.Event()

    def stamp_and_count(trial, n):
        real(trial, n)  # raises once the trial has finished: the beat must stop there
        beats.append((trial.number, n))
        if n >= 3:
            enough.set()

    monkeypatch.setattr(studies, "stamp", stamp_and_count)
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 's.log'}"), study_name="s")
    trial = study.ask()
    with TrialBeat(trial) as beat:
        assert enough.wait(60), "the trial was never stamped three times"  # a guard against a hang only
    assert not beat.beating
    numbers = [n for _, n in beats]
    assert numbers == list(range(1, len(numbers) + 1))
    assert study.trials[0].user_attrs[BEAT_ATTR]["n"] == numbers[-1]
    assert study.trials[0].user_attrs[BEAT_ATTR]["every_s"] == 0.01
    study.tell(trial, 1.0)
    assert study.trials[0].state == TrialState.COMPLETE

    other, enough = study.ask(), threading.Event()
    beat = TrialBeat(other).__enter__()
    try:
        assert enough.wait(60), "the second trial was never stamped"
        assert fail_trial(study, other._trial_id)  # another worker judged it dead
        beat.join(60)
        assert not beat.beating, "the beat went on stamping a finished trial"
    finally:
        beat.__exit__(None, None, None)
    assert study.trials[other.number].state == TrialState.FAIL


class _Killed(BaseException):
    """A SIGKILL at one storage write: nothing after it runs, no handler sees it."""


def _kill_at(storage, k: int) -> None:
    """Make the storage's k-th trial write (1-based) kill its worker before it lands: from there
    on no write lands, a handler's included."""
    writes = iter(range(1, 1_000))
    for name in ("create_new_trial", "set_trial_state_values", "set_trial_user_attr"):
        real = getattr(storage, name)

        def write(*a, real=real, **kw):
            if next(writes) >= k:
                raise _Killed
            return real(*a, **kw)

        setattr(storage, name, write)


def _dead_worker() -> str:
    """A worker on this host whose process cannot exist: its pid is above the kernel's pid_max."""
    return f"{socket.gethostname()}:{int(Path('/proc/sys/kernel/pid_max').read_text()) + 1}"


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
@pytest.mark.parametrize("queued", [False, True], ids=["drawn", "queued"])
def test_a_worker_killed_while_taking_a_trial_never_leaves_one_no_one_can_fail(tmp_path, monkeypatch, queued, kind):
    """study.ask() makes a trial RUNNING in one write and its owner took another: a worker killed
    between them left a running trial with no owner and no beat, which held a slot of the budget
    for good (a resumed search then measured one trial short). Killed at any write of claim(),
    a worker leaves every running trial named, so the next worker fails it with a line."""
    url = f"journal:{tmp_path / 's.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 's.db'}"
    dead = _dead_worker()
    monkeypatch.setattr(studies, "owner", lambda: dead)  # the worker that is killed
    held = []
    for k in range(1, 7):
        study = optuna.create_study(storage=open_storage(url), study_name=f"s{k}")
        if queued:
            study.enqueue_trial({"x": 1.0}, user_attrs={"seed": "seed"})
        _kill_at(study._storage, k)
        try:
            studies.claim(study)
        except _Killed:
            pass
        fresh = optuna.load_study(storage=open_storage(url), study_name=f"s{k}")  # as a rerun sees it
        held.append(len(fresh.get_trials(deepcopy=False, states=(TrialState.RUNNING,))))
        lines = fail_stale(fresh)
        assert len(lines) == held[-1] and all(f"(pid {dead.split(':')[1]} here) is gone" in x for x in lines), k
        assert not fresh.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), k
    # killed before its first write lands it holds nothing; after it, one trial (a queued one
    # only once its compare-and-set has landed, and that one, not a new trial beside it)
    assert held == ([0, 0, 1, 1, 1, 1] if queued else [0, 1, 1, 1, 1, 1])
    assert lines[0].startswith("trial 0 failed")


def test_a_worker_that_loses_the_race_for_a_queued_trial_never_renames_it(tmp_path, monkeypatch):
    """Two workers take the same queued trial: the loser's claim lands after the winner has named
    itself. It must not write over the winner's name: a loser that then exits would get the
    winner's live trial failed."""
    url = f"journal:{tmp_path / 's.log'}"
    a = optuna.create_study(storage=open_storage(url), study_name="s")
    a.enqueue_trial({"x": 1.0})
    b = optuna.load_study(storage=open_storage(url), study_name="s")
    queue = b.get_trials(deepcopy=False, states=(TrialState.WAITING,))  # b read the queue ...
    won = studies.claim(a)  # ... then a took the trial (a is this process: alive)
    monkeypatch.setattr(b, "get_trials", lambda **kw: queue)
    monkeypatch.setattr(studies, "owner", _dead_worker)  # b: loses, draws a new trial, dies
    lost = studies.claim(b)
    assert (won.number, lost.number) == (0, 1)
    assert (
        a.trials[0].user_attrs[OWNER_ATTR] == owner()
        and a.trials[0].user_attrs[f"{studies.CLAIM_PREFIX}{_dead_worker()}"] is None
    )
    lines = fail_stale(a)
    assert len(lines) == 1 and lines[0].startswith("trial 1 failed")  # b's own trial, not a's
    assert a.trials[0].state == TrialState.RUNNING


def test_a_running_trial_with_no_worker_recorded_is_failed_by_wall_clock(tmp_path, monkeypatch):
    """An older isotune's worker killed inside its ask() left a trial with no owner and no beat:
    past STALE_BEATS beats of wall clock since it started, it is failed too. The wall clock is
    the test's: the time the storage recorded as its start, plus what the test says."""
    monkeypatch.setattr(studies, "TRIAL_BEAT_S", 30.0)  # 10 beats: 300 s
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 's.log'}"), study_name="s")
    orphan = study.ask()
    started = study.trials[orphan.number].datetime_start  # naive local time, as the storage keeps it
    wall = {"now": started + timedelta(seconds=300)}

    class _Wall(datetime):
        @classmethod
        def now(cls, tz=None):
            return wall["now"]

    monkeypatch.setattr(studies, "datetime", _Wall)
    assert fail_stale(study) == []  # exactly the limit: not past it
    wall["now"] += timedelta(seconds=1)
    assert fail_stale(study) == [
        f"trial {orphan.number} failed: it has run 301 s with no worker recorded; its slot goes to a new trial"
    ]
    assert study.trials[orphan.number].state == TrialState.FAIL


def test_a_study_whose_last_slots_run_elsewhere_says_so(tmp_path, clock):
    """A worker stops once measured plus running trials fill the budget; where others' running
    trials fill it, the stop line says how many it measured and who runs the rest. (The clock
    stands still: the other worker never counts as silent.)"""
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 's.log'}"), study_name="s")
    other = study.ask()
    other.set_user_attr(OWNER_ATTR, "gpu-node-7:4242")
    stamp(other, 0)
    cfg = SimpleNamespace(sampler="tpe", trials=3, objective="measured", max_chunks=2, align=16, profile=None)
    measured = []

    def evaluate(bounds, trial):
        measured.append(bounds)
        return float(len(bounds))

    stopped, early = run_study(cfg, study, 256, evaluate, lambda st, n: None)
    assert not early and measured == [[0, 256], [0, 128, 256]]  # the seeds: unsplit and 50/50
    assert stopped == "measured 2 of its 3 trials; 1 more is running in other workers (trial 0 by gpu-node-7:4242)"


@pytest.mark.parametrize("n", [2, 3], ids=["before-beat", "before-owner"])
def test_ctrl_c_while_taking_a_queued_trial_fails_it(tmp_path, n):
    """Ctrl-C after the compare-and-set but before the trial is named: the trial is this worker's,
    so it fails it on the way out (the search's own handler only covers a trial it was handed)."""
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 's.log'}"), study_name="s")
    study.enqueue_trial({"x": 1.0})
    real, calls = study._storage.set_trial_user_attr, iter(range(1, 100))  # 1: claim key, 2: beat, 3: owner

    def write(*a, **kw):
        if next(calls) == n:
            raise KeyboardInterrupt
        return real(*a, **kw)

    study._storage.set_trial_user_attr = write
    with pytest.raises(KeyboardInterrupt):
        studies.claim(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_ctrl_c_after_a_new_trial_is_written_fails_it(tmp_path):
    """Ctrl-C can land inside create_new_trial after its write (in the journal's fsync): the
    trial is RUNNING in the storage, this worker's, and never handed back; it fails it too."""
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 's.log'}"), study_name="s")
    real = study._storage.create_new_trial

    def create(*a, **kw):
        real(*a, **kw)
        raise KeyboardInterrupt

    study._storage.create_new_trial = create
    with pytest.raises(KeyboardInterrupt):
        studies.claim(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_ctrl_c_after_a_queued_trials_compare_and_set_landed_fails_it(tmp_path):
    """The journal writes the compare-and-set before it reads back who won: Ctrl-C in between
    leaves the trial RUNNING, named only by this worker's claim. It is this worker's: failed."""
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 's.log'}"), study_name="s")
    study.enqueue_trial({"x": 1.0})
    real = study._storage.set_trial_state_values

    def cas(trial_id, state, *a, **kw):
        landed = real(trial_id, state, *a, **kw)
        if state == TrialState.RUNNING:
            raise KeyboardInterrupt
        return landed

    study._storage.set_trial_state_values = cas
    with pytest.raises(KeyboardInterrupt):
        studies.claim(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_a_pid_is_this_hosts_process_only_in_its_pid_space_and_lifetime(tmp_path, monkeypatch, clock):
    """Containers sharing a hostname (host networking) have separate pid spaces: a pid from
    another is judged by its beats, not by this host's process table (which would fail a live
    worker's trial at once). A pid reused by a new process (another start time) is gone."""
    monkeypatch.setattr(studies, "TRIAL_BEAT_S", 3.0)  # stale after 10 beats: 30 s
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 's.log'}"), study_name="s")
    host, sleeper = socket.gethostname(), subprocess.Popen(["sleep", "infinity"])  # alive until killed
    try:
        elsewhere, reused, same = (study.ask() for _ in range(3))
        elsewhere.set_user_attr(OWNER_ATTR, _dead_worker())  # no such pid here: in its own space it lives
        elsewhere.set_user_attr(BEAT_ATTR, studies.beat_mark(0) | {"pid_space": "pid:[1]"})
        started = studies._started(sleeper.pid)
        assert started is not None
        for t, start in ((reused, started + 1), (same, started)):
            t.set_user_attr(OWNER_ATTR, f"{host}:{sleeper.pid}")
            t.set_user_attr(BEAT_ATTR, studies.beat_mark(0) | {"started": start})
        lines = fail_stale(study)
        assert len(lines) == 1 and lines[0].startswith(
            f"trial {reused.number} failed: its worker (pid {sleeper.pid} here) is gone"
        )
        clock.now += 31
        lines = fail_stale(study)  # the other container's worker stopped beating: now it is gone
        assert len(lines) == 1 and lines[0].startswith(
            f"trial {elsewhere.number} failed: its worker ({_dead_worker()}) has not beaten"
        )
        assert study.trials[same.number].state == TrialState.RUNNING
    finally:
        sleeper.kill()
        sleeper.wait()
