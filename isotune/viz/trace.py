"""Chrome-trace / Perfetto JSON of traced prefills. Pure Python.

Input: per run ("plan", "baseline"), per rank, the executor's op events (ms from the prefill's
start). Output: one process per (run, rank), a compute track and a comm track in each, every op
a complete ("X") event named by stage, layer and chunk, e.g. `attn L3 c1`, `allreduce mlp L3 c0`.
"""

from __future__ import annotations

import json

from isotune.core.schedule import COMM

TRACKS = {"compute": 1, "comm": 2}


def chrome_trace(runs: dict[str, list[list[dict]]], meta: dict) -> dict:
    events: list[dict] = []
    for r, (run, ranks) in enumerate(runs.items()):
        for rank, ops in enumerate(ranks):
            pid = r * 1000 + rank  # one process per (run, rank); runs sort in the given order
            events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": f"{run} · rank {rank}"}})
            events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}})
            for track, tid in TRACKS.items():
                events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": track}})
            for op in ops:
                events.append(
                    {
                        "name": op["name"],
                        "cat": op["stage"],
                        "ph": "X",
                        "pid": pid,
                        "tid": TRACKS["comm" if op["kind"] == COMM else "compute"],
                        "ts": round(op["start_ms"] * 1e3, 3),  # µs
                        "dur": round(max(0.0, op["end_ms"] - op["start_ms"]) * 1e3, 3),
                        "args": {"layer": op["layer"], "chunk": op["chunk"]},
                    }
                )
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": meta}


def trace_json(runs: dict[str, list[list[dict]]], meta: dict) -> str:
    return json.dumps(chrome_trace(runs, meta)) + "\n"
