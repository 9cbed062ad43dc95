"""--comm-ctas: parsed and checked before any rank starts, handed to the ranks through the
environment, recorded in the setting plans and profiles carry, and brought by a plan to run."""

import pytest

from isotune.commands.comm import parse_ctas, plan_ctas, set_ctas
from isotune.core.errors import BadInput
from isotune.core.setting import said
from isotune.engine.group import COMM_CTAS_ENV, comm_setting


def test_parse_one_or_many():
    assert parse_ctas(None) == [] and parse_ctas("8") == [8] and parse_ctas("4,8,16", many=True) == [4, 8, 16]
    for raw, many in (("0", False), ("4,8", False), ("x", True), ("4,-1", True), ("65", False)):
        with pytest.raises(BadInput, match="--comm-ctas"):
            parse_ctas(raw, many)


def test_the_cap_reaches_the_nccl_setting_and_only_nccl_has_one(monkeypatch):
    monkeypatch.delenv(COMM_CTAS_ENV, raising=False)
    with pytest.raises(BadInput, match="needs a GPU run with --tp 2 or more"):
        set_ctas(8, 2, "cpu")
    with pytest.raises(BadInput, match="needs a GPU run"):
        set_ctas(8, 1, "cuda")  # one rank: no group, no all-reduce
    set_ctas(8, 2, "cuda")  # checked before launch: no GPU needed to hand it over
    setting = comm_setting("nccl")
    assert setting["max_ctas"] == 8 and said(setting) == "--comm-ctas 8"
    assert comm_setting("gloo") == {}
    set_ctas(None, 2, "cuda")
    assert "max_ctas" not in comm_setting("nccl") and said(comm_setting("nccl")) == "NCCL defaults"


def test_a_plan_searched_with_a_cap_brings_it_unless_one_is_given(capsys):
    topology = {"comm": {"high_priority_stream": True, "env": {}, "max_ctas": 16}}
    assert plan_ctas(topology, None) == 16
    assert "using the plan's --comm-ctas 16" in capsys.readouterr().err
    assert plan_ctas(topology, 4) == 4 and plan_ctas({"comm": {}}, None) is None


def test_cpu_commands_refuse_it_in_one_line(cli_here, tmp_path):
    for args in (
        ["search", "--model", "tiny", "--tp", "2", "--comm-ctas", "4,8", "-o", str(tmp_path / "p.yaml")],
        ["run", "--model", "tiny", "--tp", "2", "--comm-ctas", "4"],
        ["search", "--objective", "model", "--comm-ctas", "4", "-o", str(tmp_path / "p.yaml")],
    ):
        r = cli_here(*args)
        assert r.returncode == 2 and "--comm-ctas" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.iterdir())  # nothing written
