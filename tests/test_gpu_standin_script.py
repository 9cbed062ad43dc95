"""The one-call GPU script (benchmarks/gpu_standin.py) runs its dry run on CPU: every part's
plumbing that needs no CUDA, with tiny stand-ins, into a report that gives each part numbers or
the reason it has none. Its GPU numbers come only from a GPU run; this keeps that run from
failing on the day on something a CPU can catch."""

import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import types

import pytest
import torch
from conftest import ROOT

import isotune.engine

SCRIPT = ROOT / "benchmarks" / "gpu_standin.py"
spec = importlib.util.spec_from_file_location("gpu_standin", SCRIPT)
gs = importlib.util.module_from_spec(spec)
sys.modules["gpu_standin"] = gs  # its dataclasses look their module up while it loads
spec.loader.exec_module(gs)


@pytest.mark.slow
def test_the_dry_run_reports_every_part(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--dry-run"], capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["dry_run"] and rep["device_type"] == "cpu" and rep["commit"]["from"]
    assert rep["started"] and rep["ended"] and rep["versions"]["torch"]
    parts = rep["parts"]
    assert set(parts) == set(gs.PARTS)
    # the hold kernel needs CUDA: skipped, with its reason, on a CPU dry run
    assert parts["hold"]["status"] == "skipped" and parts["hold"]["reason"]
    for name in ("standin70b", "chunking", "profiles"):
        assert parts[name]["status"] == "done", (name, parts[name].get("reason"), parts[name].get("error"))

    st = parts["standin70b"]
    assert st["source"] == "isotune bench" and st["bench"]["rc"] == 0
    for s in map(str, gs.DRY.standin_lens):
        for name in ("baseline", "iso5050", "compute", "comm"):
            v = st["ours"][s][name]
            assert 0 < v["low"] <= v["estimate"] <= v["high"], (s, name, v)
    # 1024 tokens is a published length: the ratios against TokenWeave's figures are computed
    cmp = {r["tokens"]: r for r in st["comparison"]}
    assert cmp[1024]["published"] and cmp[1024]["compute_over_no_AR"] > 0 and cmp[1024]["our_speedup"] > 0
    assert cmp[256].get("note") == "no published figure at this length"

    ch = parts["chunking"]
    assert {(r["tp"], r["tokens"]) for r in ch["rows"]} == {(t, s) for t in gs.DRY.chunk_tps for s in gs.DRY.chunk_lens}
    for r in ch["rows"]:
        assert set(r["ms"]) == {"1", "2", "4"} and set(r["vs_unsplit"]) == {"2", "4"}
        assert all(v["host_ms"] > 0 for v in r["issue"].values())
    assert ch["targets"]["overhead"]["rows"] and ch["targets"]["host"]["met"] is None  # not judged on CPU

    pr = parts["profiles"]
    assert pr["hardware"] == "cpu" and all(p["rc"] == 0 for p in pr["profiles"])
    for model in gs.DRY.profile_models:
        rows = pr["estimates"][model]["side_by_side"]
        assert rows and all(r["after"] and r["after"]["compute"].startswith("measured") for r in rows)

    md = (out / "report.md").read_text()
    assert all(f"## {p}" in md for p in gs.PARTS) and "dry run" in md
    with tarfile.open(out / "files.tgz") as tar:
        names = set(tar.getnames())
    assert {"bench-standin.json", "profile-tiny-tp2.yaml", "estimate-tiny-after.json"} <= names
    assert len(list(out.iterdir())) <= 8  # a device call brings back eight files


def test_a_refused_bench_leaves_compute_only_measured_here(tmp_path):
    """Where the CLI refuses the stand-in's link (a GPU without the hold kernel), the 70B part
    still measures compute only in this process and says why the rest is missing."""
    run = gs.Run(tmp_path, gs.DRY, 540.0, list(gs.PARTS), None)
    refusal = "error: --link h100-sxm on this GPU: the GPU link's hold kernel needs triton"
    try:
        piece = gs.part_standin(run, cli=lambda args, log: {"command": "isotune bench", "rc": 2, "error": refusal})
    finally:
        shutil.rmtree(run.side, ignore_errors=True)
    assert piece["status"] == "partial" and piece["reason"] == refusal and refusal in piece["source"]
    assert set(piece["ours"]) == set(gs.DRY.standin_lens)
    for row in piece["ours"].values():
        assert set(row) == {"compute"} and row["compute"]["estimate"] > 0
    at_1024 = next(r for r in piece["comparison"] if r["tokens"] == 1024)
    assert at_1024["compute_over_no_AR"] > 0 and "baseline_over_baseline" not in at_1024


def test_the_hold_summaries():
    """The hold part's tables from given samples (the part itself needs CUDA): the 5 us / 5%
    target, and held repeats the hold did not cover left out of the slowdown."""
    rows = gs.accuracy_rows({(20, 8): [24.0, 24.5, 23.5], (2000, 16): [2090.0, 2095.0, 2100.0]})
    assert [(r["asked_us"], r["within_target"]) for r in rows] == [(20, True), (2000, True)]
    assert gs.accuracy_rows({(100, 8): [112.0, 111.0, 113.0]})[0]["within_target"] is False
    s = gs.slowdown_rows([10.0, 10.2, 9.9, 10.1], {16: [11.0, 11.3, 30.0, 11.1]}, {16: [True, True, False, True]}, 132)
    assert s[0]["covered_rounds"] == 3 and 0.05 < s[0]["slowdown"]["estimate"] < 0.15
    assert s[0]["sm_share_slowdown"] == pytest.approx(132 / 116 - 1)


class _SimulatedGpu:
    """Just enough of torch.cuda for the hold part to run on CPU: each stream a clock in ms that
    its work advances; the hold kernel takes its time, and a GEMM that starts under a hold of c
    CTAs runs at sms / (sms - c) of its time. Plumbing only: the numbers are the simulation's."""

    SMS, LAYER_MS, CYCLES_PER_MS = 132, 1.0, 1e6

    def __init__(self):
        gpu = self
        self.clock, self.holds = {"default": 0.0}, []  # holds: (start, end, ctas)
        self.current = "default"

        class Stream:
            def __init__(self, device=None, priority=0):
                self.name = f"s{len(gpu.clock)}"
                gpu.clock[self.name] = max(gpu.clock.values())

            def synchronize(self):
                gpu.synchronize()

        class Event:
            def __init__(self, enable_timing=False):
                self.t = None

            def record(self, stream=None):
                self.t = gpu.clock[stream.name if stream is not None else gpu.current]

            def synchronize(self):
                pass

            def elapsed_time(self, other):
                return other.t - self.t

        class _On:
            def __init__(self, stream):
                self.stream = stream

            def __enter__(self):
                self.before, gpu.current = gpu.current, self.stream.name

            def __exit__(self, *exc):
                gpu.current = self.before

        self.Stream, self.Event, self.stream = Stream, Event, _On

    def synchronize(self, device=None):
        end = max(self.clock.values())
        self.clock = dict.fromkeys(self.clock, end)

    def sleep(self, cycles):
        self.clock[self.current] += cycles / self.CYCLES_PER_MS

    def hold(self, ns, ctas, stream):
        start = self.clock[stream.name]
        self.clock[stream.name] = start + ns / 1e6 + 0.002  # a launch's 2 us
        self.holds.append((start, self.clock[stream.name], ctas))

    def layer(self):
        t = self.clock["default"]
        ctas = sum(c for a, z, c in self.holds if a <= t < z)
        self.clock["default"] = t + self.LAYER_MS * self.SMS / (self.SMS - ctas)


def test_the_hold_part_runs_on_a_simulated_gpu(tmp_path, monkeypatch):
    """The part's CUDA path end to end (streams, events, the spin before the GEMMs, the rounds,
    the tables, the figure) on a simulated clock: a slip there would cost the part on the GPU."""
    sim = _SimulatedGpu()
    hold_module = types.SimpleNamespace(unavailable=lambda: None, hold=sim.hold)
    monkeypatch.setitem(sys.modules, "isotune.engine.comm_hold", hold_module)
    monkeypatch.setattr(isotune.engine, "comm_hold", hold_module, raising=False)
    for name, value in {
        "Stream": sim.Stream, "Event": sim.Event, "stream": sim.stream, "synchronize": sim.synchronize,
        "_sleep": sim.sleep, "current_device": lambda: 0, "get_device_name": lambda *a: "Simulated H100",
    }.items():  # fmt: skip
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(gs, "gpu_props", lambda: {"name": "Simulated H100", "sms": sim.SMS, "memory_gib": 80})
    monkeypatch.setattr(gs, "spin_cycles_per_ms", lambda dev: sim.CYCLES_PER_MS)
    monkeypatch.setattr(gs, "gemm_layer", lambda *a: (sim.layer, {"model": "llama3-70b", "tp": 8, "tokens": 4096,
                        "hidden": 8192, "qkv_out": 1280, "o_in": 1024, "ffn": 3584}))  # fmt: skip

    def device_ms(fn, device, calls=1):
        t = sim.clock["default"]
        fn()
        return sim.clock["default"] - t

    monkeypatch.setattr(gs, "device_ms", device_ms)
    run = gs.Run(tmp_path, gs.Sizes(device="cuda", hold_repeats=3, slowdown_rounds=4), 540.0, ["hold"], None)
    try:
        piece = gs.part_hold(run)
        run.report["parts"]["hold"] = piece
        gs.figures(run, "hold")
        md = gs.markdown(run.report)
    finally:
        shutil.rmtree(run.side, ignore_errors=True)
    assert piece["status"] == "done" and piece["accuracy_met"] == {"queued": True, "idle": True}
    assert len(piece["accuracy"]) == 2 * 5 * 3
    for row in piece["slowdown"]:
        assert row["covered_rounds"] == 4
        assert row["slowdown"]["estimate"] == pytest.approx(row["sm_share_slowdown"], rel=1e-6)
    assert (tmp_path / "hold.png").exists() and "figure_error" not in piece
    assert "| queued | 2000 | 32 |" in md and "GEMMs under the hold" in md
