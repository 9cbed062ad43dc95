"""profile -> show -> bench end to end on real gloo ranks (tiny model, small lengths)."""

import json

import pytest

from isotune.core.chunking import chunk_bounds
from isotune.core.cost import simulate
from isotune.core.profile import load_profile

BENCH_KEYS = {
    "pack",
    "seq_len",
    "baseline_ms",
    "iso5050_ms",
    "plan_ms",
    "compute_ms",
    "comm_ms",
    "ideal_ms",
    "overlap_efficiency",
    "comm_cpu_ms",
    "floor_ms",
    "efficiency_ceiling",
    "predicted_baseline_ms",
    "predicted_plan_ms",
    "plan_chunks",
    "plan_ratios",
    # added beside them: 95% intervals, paired changes, the share of the achievable saving
    "repeats",
    "baseline_ms_ci",
    "iso5050_ms_ci",
    "plan_ms_ci",
    "compute_ms_ci",
    "comm_ms_ci",
    "iso5050_vs_baseline",
    "plan_vs_baseline",
    "plan_vs_iso5050",
    "share_of_achievable",
    "predicted_iso5050_ms",
}


@pytest.mark.slow
def test_profile_show_bench(tmp_path, cli, cli_here):
    prof = tmp_path / "tiny.yaml"
    r = cli("profile", "--model", "tiny", "--tp", "2", "--seq-lens", "128,256", "--repeats", "3", "-o", str(prof))
    assert r.returncode == 0, r.stderr
    p = load_profile(prof)
    assert p.topology["tp"] == 2 and p.topology["backend"] == "gloo" and p.topology["interconnect"] == "loopback"
    assert p.model["name"] == "tiny" and len(p.attn_samples) >= 6 and len(p.allreduce_samples) >= 3
    assert all(ms > 0 for *_, ms in p.attn_samples + p.mlp_samples + p.allreduce_samples)
    # a prefix never makes attention cheaper (at 128 tiny tokens it may cost less than the noise)
    assert p.fit.attn_ms(128, 128) >= p.fit.attn_ms(128, 0) > 0 and p.fit.attn_ms_per_pair >= 0
    assert p.fit.attn_ms(256, 0) > p.fit.attn_ms(32, 0)
    # timed inside real prefills: every chunk of a 2-, 4-, 8-way or 1/4:3/4 split of 128 and 256 tokens
    assert [t for t, _ in p.fit.mlp_table] == [16, 32, 64, 96, 128, 192, 256]
    assert {(q, pfx) for q, pfx, _ in p.attn_samples} >= {(256, 0), (128, 128), (64, 192), (32, 224), (192, 64)}
    # the profile's own check: whole prefills measured beside its predictions
    assert sorted((s, v) for s, v, *_ in p.check_samples) == [
        (128, "baseline"),
        (128, "iso5050"),
        (256, "baseline"),
        (256, "iso5050"),
    ]
    assert all(ms > 0 and pred > 0 for *_, ms, pred in p.check_samples) and p.fit.sync_skew >= 0

    r = cli_here("show", str(prof))
    assert r.returncode == 0 and "measured vs fitted" in r.stdout and "all-reduce" in r.stdout
    assert "whole prefills: measured vs the cost model" in r.stdout
    assert "host (launch) lane" in r.stdout and "none: on CPU ranks" in r.stdout
    assert p.topology["compile"] is False and p.topology["comm"] == {}  # eager; gloo has no NCCL knobs

    # measured in bfloat16 (the default): a float32 or compiled bench refuses it, --force warns
    for flags, words in (
        (["--dtype", "float32"], "dtype bfloat16, not float32"),
        (["--compile"], "compiled steps off, not on"),
    ):
        r = cli_here("bench", "--model", "tiny", "--tp", "2", "--seq-lens", "128", "--profile", str(prof), *flags)
        assert r.returncode == 2 and f"--profile was measured for {words}: profile this setup" in r.stderr
    r = cli("bench", "--model", "tiny", "--tp", "2", "--seq-lens", "128", "--profile", str(prof), "--dtype", "float32",
            "--repeats", "1", "--force")  # fmt: skip
    assert r.returncode == 0 and "warning: --profile was measured for dtype bfloat16, not float32 (--force)" in r.stderr

    out = tmp_path / "bench.json"
    r = cli(
        "bench",
        "--model",
        "tiny",
        "--tp",
        "2",
        "--seq-lens",
        "128,256",
        "--chunks",
        "3",
        "--profile",
        str(prof),
        "--repeats",
        "2",
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    recs = json.loads(out.read_text())
    assert [rec["seq_len"] for rec in recs] == [128, 256]
    for rec in recs:
        assert set(rec) == BENCH_KEYS
        assert rec["ideal_ms"] == max(rec["compute_ms"], rec["comm_ms"])
        # gloo ranks burn CPU to all-reduce (copies, sockets, the sum): measured, and it lifts the floor
        assert rec["comm_cpu_ms"] > 0
        assert rec["floor_ms"] == max(rec["compute_ms"] + rec["comm_cpu_ms"], rec["comm_ms"]) >= rec["ideal_ms"]
        assert rec["plan_chunks"] == 3 and rec["plan_ms"] > 0
        # each prediction is the cost model's for that variant's split, not merely a number
        splits = {"baseline": [1.0], "iso5050": [0.5, 0.5], "plan": rec["plan_ratios"]}
        for name, ratios in splits.items():
            want = simulate(load_profile(prof), chunk_bounds(rec["seq_len"], ratios, 16), 2)
            assert rec[f"predicted_{name}_ms"] == pytest.approx(want, rel=1e-9), name
        for name in ("baseline", "iso5050", "plan", "compute", "comm"):
            low, high = rec[f"{name}_ms_ci"]
            assert low <= rec[f"{name}_ms"] <= high
        for key in ("iso5050_vs_baseline", "plan_vs_baseline", "plan_vs_iso5050"):
            change, low, high = rec[key]
            assert low <= change <= high and -1 < change
        ratio = rec["plan_ms"] / rec["baseline_ms"] - 1  # the paired change agrees in sign with the times
        assert (rec["plan_vs_baseline"][0] < 0) == (ratio < 0) or abs(ratio) < 0.05
    assert "overlap eff." in r.stdout and "eff. ceiling" in r.stdout and "error" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80  # tables fit 80 columns


def test_bench_and_profile_bad_input(cli_here, tmp_path):
    r = cli_here("bench", "--seq-lens", "128,abc")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --seq-lens '128,abc' does not parse: give comma-separated token counts like 512,1024"
    ]
    for args in (
        ["bench", "--profile", str(tmp_path / "none.yaml")],
        ["show", str(tmp_path / "none.yaml")],
        ["profile", "--model", "tiny", "-o", str(tmp_path / "no" / "p.yaml")],
    ):
        r = cli_here(*args)
        assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_overlap_efficiency_is_of_a_split_never_of_an_unsplit_plan():
    """Where the plan keeps no split for a length, its prefill overlaps nothing: the efficiency
    shown is 50/50's, not the unsplit plan's noise read as a gain."""
    from isotune.commands.bench.job import record

    samples = {
        "baseline": [10.0, 10.2, 9.9, 10.1],
        "iso5050": [8.0, 8.1, 7.9, 8.2],
        "compute": [7.0, 7.1, 6.9, 7.0],
        "comm": [3.0, 3.1, 2.9, 3.0],
        "plan": [9.6, 9.7, 9.5, 9.6],  # an unsplit plan a little faster by chance
    }
    unsplit = record(1024, samples, None, plan_splits=False)
    fifty = record(1024, {k: v for k, v in samples.items() if k != "plan"}, None)
    assert unsplit["overlap_efficiency"] == fifty["overlap_efficiency"] > 0.5  # 50/50's
    split = record(1024, samples, None, plan_splits=True)
    assert split["overlap_efficiency"] < 0.2  # the plan's own
    assert unsplit["plan_vs_baseline"] == split["plan_vs_baseline"]  # the plan's change is still its own


def test_bench_says_per_length_what_it_found_and_never_a_bare_share_outside_0_1(capsys):
    """bench's plain words: a plan that keeps no split reads 'no split', its change against the
    baseline (itself) is not printed, and 50/50 measured here is held against it; a split that
    helps says how much, one within noise says so; an efficiency below 0 carries its reason."""
    from isotune.commands.bench.job import record
    from isotune.commands.bench.tables import show_bench

    jitter = [1.0, 1.03, 0.97, 1.05, 0.96]

    def rec(s, plan, ratios, iso5050=0.8):
        base = [1000.0 * s / 1024 * j for j in jitter]
        samples = {
            "baseline": base,
            "iso5050": [b * iso5050 * j for b, j in zip(base, reversed(jitter), strict=True)],
            "compute": [b * 0.7 for b in base],
            "comm": [b * 0.3 for b in base],
        }
        samples["plan"] = (
            [b * plan * j for b, j in zip(base, jitter[1:] + jitter[:1], strict=True)] if len(ratios) > 1 else base
        )
        r = record(s, samples, None, plan_splits=len(ratios) > 1)
        r["plan_chunks"], r["plan_ratios"] = len(ratios), ratios
        return r

    recs = [rec(512, 1.0, [1.0], iso5050=1.01), rec(1024, 0.99, [0.5, 0.5]), rec(2048, 0.78, [0.4, 0.6])]
    recs[1]["overlap_efficiency"] = -0.2
    assert recs[0]["plan_vs_baseline"] is None  # no change of the baseline against itself, even in JSON
    show_bench(recs, "isotune bench: small, tp 2 gloo on cpu over an emulated 1gbit link", 5)
    out = capsys.readouterr().out
    row512 = next(line for line in out.splitlines() if line.lstrip().startswith("512 "))
    assert "no split" in row512 and "(baseline)" in row512 and "+0.0" not in row512
    assert "  512 tokens: the plan keeps no split, and 50/50 here is within noise (" in out
    assert "  1024 tokens: the plan (0.50/0.50) is within noise (" in out
    assert "  2048 tokens: the plan (0.40/0.60) saves 2" in out
    assert "-0.20ᵃ" in out and "ᵃ below 0: the split was slower than the unsplit prefill" in out
    assert "ᵇ" not in out  # a reason is printed only for a mark shown
