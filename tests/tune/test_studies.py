"""Study settings on resume: a study drawn by an older isotune's search space is refused with
what to do, not with a setting no flag can match."""

import optuna
import pytest

from isotune.core.errors import BadInput
from isotune.tune.studies import SETTINGS_ATTR, open_study


def test_a_study_from_an_older_search_space_says_to_start_afresh():
    storage = optuna.storages.InMemoryStorage()
    old = optuna.create_study(storage=storage, study_name="s512")
    old.set_user_attr(SETTINGS_ATTR, {"seq_len": 512})  # no "space": written before space 2
    with pytest.raises(BadInput, match="drawn by an older isotune.*new --study-name or --storage"):
        open_study(storage, "s512", {"seq_len": 512, "space": 2})
    # the same settings resume
    assert open_study(storage, "s1024", {"seq_len": 1024, "space": 2}).study_name == "s1024"
    assert open_study(storage, "s1024", {"seq_len": 1024, "space": 2}).user_attrs[SETTINGS_ATTR]["space"] == 2
