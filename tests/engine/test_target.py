"""The run target's dtype: auto never picks float32, and an explicit float32 on a GPU is warned
about (checked before any rank starts, so no GPU is needed to see it)."""

import pytest

from isotune.core.spec import load_spec
from isotune.engine.target import fit_target


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_auto_is_bfloat16_for_presets_and_says_nothing(device, capsys):
    assert fit_target(load_spec("tiny"), 1, device, "auto", 64) == "bfloat16"
    assert capsys.readouterr().err == ""


def test_an_explicit_float32_is_warned_about_on_gpus_only(capsys):
    assert fit_target(load_spec("tiny"), 1, "cpu", "float32", 64) == "float32"
    assert capsys.readouterr().err == ""  # on CPU ranks float32 is a fair choice
    assert fit_target(load_spec("tiny"), 1, "cuda", "float32", 64) == "float32"
    err = capsys.readouterr().err
    assert err.startswith("warning: float32 on GPUs runs without flash attention") and "--dtype auto" in err
