"""--comm-ctas: parsed and checked before any rank starts, carried by the target to the ranks,
recorded in the setting plans and profiles carry, and brought by a plan to run."""

import pytest

from isotune.commands.prologue import prepare
from isotune.core.errors import BadInput
from isotune.core.plan import Bucket, Plan, save_plan
from isotune.core.setting import said
from isotune.core.spec import load_spec
from isotune.core.target import Target, parse_ctas
from isotune.engine import topology
from isotune.engine.group import comm_setting


def test_parse_one_or_many():
    assert parse_ctas(None) == [] and parse_ctas("8") == [8] and parse_ctas("4,8,16", many=True) == [4, 8, 16]
    for raw, many in (("0", False), ("4,8", False), ("x", True), ("4,-1", True), ("65", False)):
        with pytest.raises(BadInput, match="--comm-ctas"):
            parse_ctas(raw, many)


def test_the_cap_is_in_the_nccl_setting_and_only_nccl_has_one():
    setting = comm_setting("nccl", 8)
    assert setting["max_ctas"] == 8 and said(setting) == "--comm-ctas 8"
    assert comm_setting("gloo", 8) == {}
    assert "max_ctas" not in comm_setting("nccl") and said(comm_setting("nccl")) == "NCCL defaults"


def test_a_plan_searched_with_a_cap_brings_it_unless_one_is_given(tmp_path, monkeypatch, capsys):
    # a GPU group as the prologue sees it before launch (no GPU needed: the link is not asked)
    monkeypatch.setattr(topology, "device_name", lambda device: "NVIDIA H100")
    monkeypatch.setattr(topology, "gpu_indices", lambda ordinals: [None] * len(ordinals))
    spec = load_spec("tiny")
    target = Target(spec=spec, tp=2, device="cuda", dtype="bfloat16", max_len=0)
    comm = {"high_priority_stream": True, "env": {}, "max_ctas": 16}
    plan = Plan(
        model={"name": spec.name, "fingerprint": spec.fingerprint(), "layers": spec.layers},
        topology={"tp": 2, "backend": "nccl", "device": "NVIDIA H100", "dtype": "bfloat16", "comm": comm},
        software={},
        align=64,
        buckets=[Bucket(min_tokens=1, max_tokens=512, chunks=1, ratios=[1.0], plan_ms=1.0, baseline_ms=1.0)],
    )
    path = tmp_path / "plan.yaml"
    save_plan(plan, path)
    prep = prepare(target, [256], plan_paths=[str(path)], plan_ctas=True)  # as run asks
    assert prep.target.comm_ctas == 16 and "using the plan's --comm-ctas 16" in capsys.readouterr().err
    with pytest.raises(BadInput, match="comm"):  # a cap given that is not the plan's: the setting differs
        prepare(target.with_(comm_ctas=4), [256], plan_paths=[str(path)], plan_ctas=True)
    with pytest.raises(BadInput, match="comm"):  # bench measures the cap it is given, never a plan's
        prepare(target, [256], plan_paths=[str(path)])


def test_cpu_commands_refuse_it_in_one_line(cli_here, tmp_path):
    for args in (
        ["search", "--model", "tiny", "--tp", "2", "--comm-ctas", "4,8", "-o", str(tmp_path / "p.yaml")],
        ["run", "--model", "tiny", "--tp", "2", "--comm-ctas", "4"],
        ["search", "--objective", "model", "--comm-ctas", "4", "-o", str(tmp_path / "p.yaml")],
    ):
        r = cli_here(*args)
        assert r.returncode == 2 and "--comm-ctas" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.iterdir())  # nothing written
