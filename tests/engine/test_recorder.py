"""Traced prefills record true op intervals. The overlap is made deterministic: rank 1 joins
late, so rank 0's first all-reduce cannot finish before rank 1 arrives, while rank 0 goes on to
compute the next chunk's attention. The trace must show exactly that."""

import json
import time

import torch

from isotune.core.spec import load_spec
from isotune.engine import dist
from isotune.engine.executor import prefill
from isotune.engine.model import build_model
from isotune.viz.trace import chrome_trace

LATE_S = 1.0
SEQ = 128


def _worker(info, out: str) -> int:
    model = build_model(load_spec("tiny").with_layers(1), info, torch.float32, SEQ, seed=0)
    ids = torch.arange(SEQ) % 100  # (S,)
    runs = {}
    for name, bounds in (("baseline", [0, SEQ]), ("plan", [0, 64, SEQ])):
        prefill(model, ids, bounds)  # warm-up
        dist.barrier(info)
        if info.rank == 1:
            time.sleep(LATE_S)
        events: list[dict] = []
        prefill(model, ids, bounds, trace=events)
        runs[name] = dist.gather_objects(events, info)
    if info.is_main:
        with open(out, "w") as f:
            json.dump(runs, f)
    return 0


def _by_name(events: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in events}


def _overlap_ms(a: dict, b: dict) -> float:
    return min(a["end_ms"], b["end_ms"]) - max(a["start_ms"], b["start_ms"])


def test_a_late_peer_shows_an_all_reduce_in_flight_under_the_next_chunks_compute(tmp_path):
    out = tmp_path / "trace.json"
    assert dist.run_ranks(_worker, dist.Ranks(tp=2, device="cpu"), str(out)) == 0
    runs = json.loads(out.read_text())

    plan = _by_name(runs["plan"][0])  # rank 0
    # 1 layer, 2 chunks: attention and MLP per chunk, an all-reduce after each
    assert sorted(plan) == sorted(
        f"{p}{s} L0 c{c}" for p in ("", "allreduce ") for s in ("attn", "mlp") for c in (0, 1)
    )
    assert all(e["end_ms"] >= e["start_ms"] >= 0 for e in plan.values())
    ar0, attn1 = plan["allreduce attn L0 c0"], plan["attn L0 c1"]
    assert ar0["end_ms"] - ar0["start_ms"] >= 0.8 * LATE_S * 1e3  # it waited for rank 1
    assert _overlap_ms(ar0, attn1) >= 0.9 * (attn1["end_ms"] - attn1["start_ms"])  # attn c1 ran under it
    assert plan["mlp L0 c0"]["start_ms"] >= ar0["end_ms"]  # the MLP needs the reduced attention

    base = runs["baseline"][0]
    comm = [e for e in base if e["kind"] == "comm"]
    compute = [e for e in base if e["kind"] == "compute"]
    assert len(comm) == 2 and len(compute) == 2
    assert all(_overlap_ms(c, k) <= 0 for c in comm for k in compute)  # serial: nothing overlaps
    # the Chrome trace keeps it: rank 0's all-reduce and the next chunk's attention overlap there too
    chrome = chrome_trace({"plan": runs["plan"]}, {})["traceEvents"]
    events = {e["name"]: e for e in chrome if e["ph"] == "X" and e["pid"] == 0}  # rank 0
    ar, attn = events["allreduce attn L0 c0"], events["attn L0 c1"]
    assert ar["tid"] != attn["tid"]
    assert min(ar["ts"] + ar["dur"], attn["ts"] + attn["dur"]) - max(ar["ts"], attn["ts"]) > 0.9 * attn["dur"]
    # rank 1 joined late, so its own all-reduces did not wait: its trace shows them short
    late = _by_name(runs["plan"][1])
    assert late["allreduce attn L0 c0"]["end_ms"] - late["allreduce attn L0 c0"]["start_ms"] < 0.5 * LATE_S * 1e3


def test_a_queued_all_reduce_starts_when_its_predecessor_ends():
    """Issued at 1 ms while the one before runs until 5 ms: on the comm lane it starts at 5 ms,
    so the lane never shows two at once; compute events are left as they were."""
    from isotune.engine.recorder import queued_comms

    events = [
        {"kind": "comm", "start_ms": 0.0, "end_ms": 5.0},
        {"kind": "compute", "start_ms": 0.5, "end_ms": 3.0},
        {"kind": "comm", "start_ms": 1.0, "end_ms": 7.0},  # queued behind the first
        {"kind": "comm", "start_ms": 9.0, "end_ms": 10.0},  # the lane was free: unchanged
    ]
    out = queued_comms([dict(e) for e in events])
    assert [(e["start_ms"], e["end_ms"]) for e in out] == [(0.0, 5.0), (0.5, 3.0), (5.0, 7.0), (9.0, 10.0)]
