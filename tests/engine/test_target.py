"""The target, resolved once before any rank starts: auto never picks float32, an explicit
float32 on a GPU is warned about (no GPU is needed to see it), the TP size and comm cap are
checked against the model and the backend."""

import pytest

from isotune.core.errors import BadInput
from isotune.core.spec import load_spec
from isotune.core.target import Target, TargetFlags, parse_tp
from isotune.engine.target import fit_target, resolve_target, with_ctas


def _target(device: str, dtype: str) -> Target:
    return Target(spec=load_spec("tiny"), tp=1, device=device, dtype=dtype, max_len=0)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_auto_is_bfloat16_for_presets_and_says_nothing(device, capsys):
    fitted = fit_target(_target(device, "auto"), 64)
    assert fitted.dtype == "bfloat16" and fitted.max_len == 64
    assert capsys.readouterr().err == ""


def test_an_explicit_float32_is_warned_about_on_gpus_only(capsys):
    assert fit_target(_target("cpu", "float32"), 64).dtype == "float32"
    assert capsys.readouterr().err == ""  # on CPU ranks float32 is a fair choice
    assert fit_target(_target("cuda", "float32"), 64).dtype == "float32"
    err = capsys.readouterr().err
    assert err.startswith("warning: float32 on GPUs runs without flash attention") and "--dtype auto" in err


def test_resolve_reads_every_flag_once():
    t = resolve_target(TargetFlags(model="tiny", layers=1, tp="2", device="cpu", threads=2, seed=7, compile=True))
    assert (t.spec.name, t.spec.layers, t.tp, t.device, t.threads, t.seed, t.compile) == (
        "tiny",
        1,
        2,
        "cpu",
        2,
        7,
        True,
    )
    assert t.backend == "gloo" and t.comm_ctas is None and t.max_len == 0  # fitted later, for its lengths


@pytest.mark.parametrize("raw", ["two", "0", "2,4", "-1"])
def test_a_bad_tp_is_one_line(raw):
    with pytest.raises(BadInput, match="--tp"):
        resolve_target(TargetFlags(tp=raw, device="cpu"))
    assert parse_tp("4,8", many=True) == [4, 8]


def test_only_nccl_takes_a_cta_cap():
    with pytest.raises(BadInput, match="needs a GPU run with --tp 2 or more"):
        resolve_target(TargetFlags(tp="2", device="cpu", comm_ctas="8"))
    one_gpu = Target(spec=load_spec("tiny"), tp=1, device="cuda", dtype="bfloat16", max_len=0)
    with pytest.raises(BadInput, match="needs a GPU run"):
        with_ctas(one_gpu, 8)  # one rank: no group, no all-reduce
    two_gpus = one_gpu.with_(tp=2)  # checked before launch: no GPU needed to hand it over
    assert with_ctas(two_gpus, 8).comm_ctas == 8 and with_ctas(two_gpus, None).comm_ctas is None
