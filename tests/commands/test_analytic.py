"""Plans for GPUs you don't have: `profile --hardware` computes a profile from the catalog,
`search --objective model` plans on it for that hardware, and neither is used on other
hardware without --force."""

import pytest

from isotune.core.plan import load_plan
from isotune.core.profile import load_profile


@pytest.mark.slow
def test_an_analytic_profile_plans_for_its_hardware_and_nowhere_else(cli, cli_here, tmp_path):
    prof, plan = tmp_path / "h100.yaml", tmp_path / "plan.yaml"
    r = cli_here("profile", "--hardware", "h100-sxm", "--model", "tiny", "--tp", "2", "-o", str(prof))
    assert r.returncode == 0, r.stderr
    p = load_profile(prof)
    assert p.source == "model" and p.topology["hardware"] == "h100-sxm" and p.topology["backend"] == "nccl"
    assert any("NCCL channels" in line for line in p.assumptions) and not p.attn_samples
    r = cli_here("show", str(prof))
    assert r.returncode == 0 and "nothing here was measured" in r.stdout and "measured vs fitted" not in r.stdout

    r = cli_here("search", "--objective", "model", "--profile", str(prof), "--seq-lens", "1024,4096", "--trials", "10",
            "-o", str(plan))  # fmt: skip
    assert r.returncode == 0, r.stderr
    made = load_plan(plan)
    assert made.topology["hardware"] == "h100-sxm" and made.topology["device"] == "h100-sxm (analytic)"

    # on these CPU ranks: the plan and the profile are for another machine
    r = cli_here("run", "--model", "tiny", "--tp", "2", "--seq-len", "256", "--plan", str(plan))
    assert r.returncode == 2 and "the plan was made for backend nccl, not gloo" in r.stderr
    assert "device h100-sxm (analytic), not cpu" in r.stderr and "--force" in r.stderr
    # the forced run starts its two ranks: a process of its own
    r = cli("run", "--model", "tiny", "--tp", "2", "--seq-len", "256", "--plan", str(plan), "--force", "--repeats", "1")
    assert r.returncode == 0 and "warning: the plan was made for backend nccl" in r.stderr
    r = cli_here("bench", "--model", "tiny", "--tp", "2", "--seq-lens", "256", "--profile", str(prof))
    assert r.returncode == 2 and "--profile was computed for backend nccl, not gloo" in r.stderr


def test_profile_hardware_bad_input(cli_here, tmp_path):
    out = str(tmp_path / "p.yaml")
    for args, words in (
        (["--hardware", "h900"], "not in the catalog: use one of a100-sxm"),
        (["--hardware", "h100-sxm", "--dtype", "float32"], "analytic profiles model bfloat16 or float16"),
        (["--hardware", "a800-sxm", "--model", "llama-30b", "--tp", "8"], "does not divide"),
    ):
        r = cli_here("profile", *args, "-o", out)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_estimate_prints_a_table_and_writes_its_plot_and_json(cli_here, tmp_path):
    import json

    png, out = tmp_path / "e.png", tmp_path / "e.json"
    r = cli_here("estimate", "--model", "llama2-70b", "--hardware", "rtx4090,a800-sxm", "--tp", "4,8",
            "--seq-lens", "1024,4096", "--plot", str(png), "--json", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "nothing here was measured" in " ".join(r.stdout.split())
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    rows = json.loads(out.read_text())
    assert {(x["hardware"], x["tp"], x["tokens"]) for x in rows} == {
        (hw, tp, s) for hw in ("rtx4090", "a800-sxm") for tp in (4, 8) for s in (1024, 4096)
    }
    assert png.read_bytes()[:4] == b"\x89PNG"
    for args, words in (
        (["--hardware", "b300"], "not in the catalog"),
        (["--tp", "four"], "TP sizes separated by commas"),
        (["--model", "llama-30b", "--tp", "8"], "no hardware x TP size fits llama-30b"),
        (["--tp", "0,4"], "TP sizes separated by commas, e.g. 4,8, each at least 1"),
        (["--dtype", "float32"], "analytic profiles model bfloat16 or float16"),
    ):
        r = cli_here("estimate", *args)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
