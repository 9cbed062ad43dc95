"""Study settings on resume: a study drawn by an older isotune's search space is refused with
what to do, not with a setting no flag can match. Running trials of dead workers: one whose
heartbeat stopped (a worker on another host) gives its slot back; a live one keeps it."""

import time

import optuna
import pytest
from optuna.trial import TrialState

from isotune.core.errors import BadInput
from isotune.tune import studies
from isotune.tune.studies import (
    BEAT_ATTR,
    OWNER_ATTR,
    SETTINGS_ATTR,
    TrialBeat,
    fail_stale,
    fail_trial,
    open_storage,
    open_study,
    owner,
    stamp,
)


def test_a_study_from_an_older_search_space_says_to_start_afresh():
    storage = optuna.storages.InMemoryStorage()
    old = optuna.create_study(storage=storage, study_name="s512")
    old.set_user_attr(SETTINGS_ATTR, {"seq_len": 512})  # no "space": written before space 2
    with pytest.raises(BadInput, match="drawn by an older isotune.*new --study-name or --storage"):
        open_study(storage, "s512", {"seq_len": 512, "space": 2})
    # the same settings resume
    assert open_study(storage, "s1024", {"seq_len": 1024, "space": 2}).study_name == "s1024"
    assert open_study(storage, "s1024", {"seq_len": 1024, "space": 2}).user_attrs[SETTINGS_ATTR]["space"] == 2


def test_a_running_trial_whose_heartbeat_stopped_is_failed_with_a_line(tmp_path, monkeypatch):
    monkeypatch.setattr(studies, "TRIAL_BEAT_S", 0.05)  # stale after 10 beats: 0.5 s
    storage = open_storage(f"journal:{tmp_path / 's.log'}")  # the real journal file, as search uses
    study = optuna.create_study(storage=storage, study_name="s")
    dead, alive, here, old = (study.ask() for _ in range(4))
    for t in (dead, alive):
        t.set_user_attr(OWNER_ATTR, "gpu-node-7:4242")  # another host: no process to look up
        stamp(t, 0)
    here.set_user_attr(OWNER_ATTR, owner())  # this process: alive, whatever its beat says
    stamp(here, 0)
    old.set_user_attr(OWNER_ATTR, "gpu-node-7:4243")  # no beat at all (an older isotune): left alone
    with TrialBeat(alive):
        assert fail_stale(study) == []  # first sight: silence is timed from here, on this clock
        time.sleep(0.8)
        assert study.trials[alive.number].user_attrs[BEAT_ATTR]["n"] >= 5  # it kept beating
        lines = fail_stale(study)
    assert len(lines) == 1 and lines[0].startswith(f"trial {dead.number} failed: its worker (gpu-node-7:4242)")
    assert lines[0].endswith("s (every 0.05 s while alive); its slot goes to a new trial")
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.RUNNING]
    assert not fail_trial(study, dead._trial_id)  # a second worker failing it too: no error, no line
    study.tell(alive, 1.0)  # the beat stopped with the trial: telling it is not raced
    time.sleep(0.15)
    assert study.trials[alive.number].state == TrialState.COMPLETE
