"""Seeing the overlap: the Chrome trace and the timeline of `run`, search plots, study tables,
and the one-line hint when matplotlib is missing."""

import json
import sys

import pytest
from conftest import ROOT

from isotune.cli import main

PNG = b"\x89PNG\r\n\x1a\n"
PROFILE = str(ROOT / "profiles" / "small-l2-tp2-bf16-cpu-gloo-shaped1gbit.yaml")


def _overlap(a: dict, b: dict) -> float:
    return min(a["ts"] + a["dur"], b["ts"] + b["dur"]) - max(a["ts"], b["ts"])


@pytest.mark.slow
def test_trace_and_timeline_of_a_two_rank_two_chunk_run(tmp_path, cli):
    trace, png, out = tmp_path / "trace.json", tmp_path / "timeline.png", tmp_path / "run.json"
    r = cli(
        "run", "--model", "small", "--layers", "1", "--tp", "2", "--seq-len", "512", "--chunks", "2",
        "--compare", "--dtype", "bfloat16", "--trace", str(trace), "--timeline", str(png), "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads(trace.read_text())
    # the traced prefills are one more of each than the table's: both files carry the table's times too
    rec = json.loads(out.read_text())
    assert d["otherData"]["timed_separately"] == (
        f"the table's (typical of 10, slowest rank): plan {rec['prefill_ms']:.1f} ms, "
        f"baseline {rec['baseline_prefill_ms']:.1f} ms"
    )
    names = {e["pid"]: e["args"]["name"] for e in d["traceEvents"] if e["name"] == "process_name"}
    assert sorted(names.values()) == ["baseline · rank 0", "baseline · rank 1", "plan · rank 0", "plan · rank 1"]
    ops = [e for e in d["traceEvents"] if e["ph"] == "X"]
    by_pid = {pid: [e for e in ops if e["pid"] == pid] for pid in names}
    for pid, evs in by_pid.items():
        run = names[pid].split(" ")[0]
        # 1 layer: attention + MLP and an all-reduce after each, per chunk
        assert len(evs) == 4 * (2 if run == "plan" else 1)
        assert {e["name"] for e in evs} >= {"attn L0 c0", "allreduce mlp L0 c0"}
        comm = [e for e in evs if e["name"].startswith("allreduce")]
        compute = [e for e in evs if not e["name"].startswith("allreduce")]
        assert all(e["tid"] == 2 for e in comm) and all(e["tid"] == 1 for e in compute)
        assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in evs)
        for c in comm:  # each all-reduce starts once the compute that produced it has ended
            producer = next(k for k in compute if k["name"] == c["name"].removeprefix("allreduce "))
            assert c["ts"] >= producer["ts"] + producer["dur"] - 1, (c, producer)  # µs rounding
        if run == "baseline":  # serial: nothing overlaps
            assert [(c, k) for c in comm for k in compute if _overlap(c, k) > 0] == []
    # whether an all-reduce overlaps the next chunk on 2 shared cores is up to gloo's timing;
    # tests/engine/test_recorder.py makes that overlap happen and checks it in the trace
    data = png.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000


# in this process pytest shows again the optuna warnings isotune silences
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_search_plots_and_study_tables(tmp_path, cli_here):
    plots = tmp_path / "plots"
    out = tmp_path / "plan.yaml"
    r = cli_here(
        "search", "--objective", "model", "--profile", PROFILE, "--seq-lens", "512,2048", "--trials", "10",
        "-o", str(out), "--plots", str(plots),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in plots.iterdir())
    assert files == ["history-2048.png", "history-512.png", "landscape-2048.png", "landscape-512.png", "speedup.png"]
    assert all((plots / f).read_bytes().startswith(PNG) for f in files)

    storage = f"journal:{tmp_path / 'plan.study.log'}"
    r = cli_here("show", storage)
    assert r.returncode == 0 and "named isotune-small-L2-tp2-bfloat16-cpu-model-<study>" in r.stdout
    assert "pruned" in r.stdout and max(map(len, r.stdout.splitlines())) <= 100
    first = [line.split()[0] for line in r.stdout.splitlines() if line.startswith("s")]
    assert first.index("s512") < first.index("s2048")  # by length, not as strings
    r = cli_here("show", storage, "--study", "isotune-small-L2-tp2-bfloat16-cpu-model-s2048")
    assert r.returncode == 0 and "trials of" in r.stdout and "seed" in r.stdout
    r = cli_here("show", storage, "--study", "512")  # a study by its length, as the table names it
    assert r.returncode == 0 and "trials of isotune-small-L2-tp2-bfloat16-cpu-model-s512" in " ".join(r.stdout.split())
    r = cli_here("show", storage, "--study", "nope")
    assert r.returncode == 2 and "no study 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = cli_here("show", str(out))
    assert r.returncode == 0 and "50/50" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--model", "tiny", "--timeline", "{tmp}/t.png"],
        ["search", "--objective", "model", "--profile", PROFILE, "-o", "{tmp}/p.yaml", "--plots", "{tmp}/plots"],
    ],
)
def test_missing_matplotlib_is_a_one_line_hint(tmp_path, monkeypatch, capsys, args):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'isotune[plots]'" in err
    assert not list(tmp_path.iterdir())  # nothing written
