"""What each rank of `isotune run` executes on its model (built once by the launch): per prompt
(a Request) the prefill with its split, greedy decoding from the KV cache, and on rank 0 the
text as it grows.

Per prompt: with --compare (or --repeats) the timing protocol first (plan and baseline
interleaved); then the request itself, timed from a barrier: time to first token (the prefill
and the first token's logits) and decode speed, the slowest rank's.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

import torch

from isotune.commands.run.batch import Batching, run_batched
from isotune.core.chunking import chunk_bounds, chunk_sizes
from isotune.core.files import atomic_write_bytes, atomic_write_text
from isotune.core.stats import paired_change
from isotune.core.text import TextCodec, load_text
from isotune.engine import dist
from isotune.engine.decode import greedy_decode, prepare_graphs
from isotune.engine.executor import prefill
from isotune.engine.model import TPModel
from isotune.engine.rank import DistInfo
from isotune.engine.timing import time_prefills
from isotune.engine.topology import title


@dataclass(kw_only=True)
class Request:
    """One prompt and the split it runs with."""

    ids: list[int]
    ratios: list[float]
    bucket: str | None  # "min..max" of the plan bucket used, or None without a plan
    text: str | None = None
    where: str = "prompt"
    note: str | None = None  # why the split differs from the one asked for


@dataclass(kw_only=True)
class RunJob:
    requests: list[Request]
    align: int
    text: bool  # decode the output with the checkpoint's tokenizer
    jsonl: bool  # --prompts: one JSON line per prompt on stdout, a summary table per bucket; --json: one document
    trace_path: str | None
    timeline_path: str | None
    max_new_tokens: int
    compare: bool
    json_path: str | None
    graphs: bool = False  # --cuda-graphs: decode steps replayed as one CUDA graph (engine.graphed)
    warmup: int
    repeats: int  # 0: time only the request itself (time to first token, decode speed)
    batching: Batching | None = None  # --max-seqs above 1: the prompts run together (run.batch)

    def run(self, model: TPModel, info: DistInfo) -> int:
        return _run(model, info, self)


@torch.inference_mode()
def _run(model: TPModel, info: DistInfo, cfg: RunJob) -> int:
    spec = model.spec
    codec = load_text(spec.checkpoint) if cfg.text and info.is_main else None
    stop = codec.stop_ids if codec else frozenset()
    stop = frozenset(dist.broadcast_object(sorted(stop), info))  # the same on every rank
    if cfg.batching is not None:
        return _run_batched(model, info, cfg, codec, stop)
    results, lines = [], []
    for i, job in enumerate(cfg.requests):
        streaming = codec is not None and not cfg.jsonl
        r = _run_job(model, info, cfg, job, codec, stop, first=i == 0, stream=streaming)
        if i == 0 and (cfg.trace_path or cfg.timeline_path):
            _trace(model, info, job, cfg, r)
        results.append(r)
        if info.is_main and cfg.jsonl:
            lines.append({"index": i} | r)
            print(json.dumps(lines[-1], ensure_ascii=False), flush=True)
    if info.is_main:
        _report(model, info, cfg, results, lines)
    return 0


def _run_job(
    model: TPModel, info: DistInfo, cfg: RunJob, job: Request, codec: TextCodec | None, stop, first: bool, stream: bool
) -> dict:
    ids = torch.tensor(job.ids, device=info.device)  # (S,)
    s = ids.shape[0]
    bounds = chunk_bounds(s, job.ratios, cfg.align)
    times, change = None, None
    if cfg.repeats:
        variants = {"plan": bounds} | ({"baseline": [0, s]} if cfg.compare else {})
        samples: dict[str, list[float]] = {}
        times = time_prefills(model, info, ids, variants, cfg.warmup, cfg.repeats, samples=samples)
        change = paired_change(samples["baseline"], samples["plan"]) if cfg.compare else None
    elif first:  # the process's first prefill pays for allocations; a warm one times the request
        for _ in range(cfg.warmup):
            prefill(model, ids, bounds)
    base = model.final_norm(prefill(model, ids, [0, s])) if cfg.compare else None  # (S, hidden)

    decoder = codec.stream() if codec else None
    stamps: list[float] = []

    def on_token(token: int) -> None:
        stamps.append(time.perf_counter())
        if stream:
            sys.stdout.write(decoder.push(token))
            sys.stdout.flush()

    if cfg.graphs and cfg.max_new_tokens > 1:  # captured before the timed request, not inside it
        prepare_graphs(model, s)
    dist.barrier(info)
    dist.synchronize(info.device)
    t0 = time.perf_counter()
    x = prefill(model, ids, bounds)  # (S, hidden), fills the cache
    dist.synchronize(info.device)
    t_prefill = time.perf_counter()
    generated = greedy_decode(model, x[-1:], s, cfg.max_new_tokens, stop, on_token, graphs=cfg.graphs)
    if stream:
        print(decoder.flush(), flush=True)
    first_at = stamps[0] if stamps else t_prefill
    decode_s = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    prefill_ms, ttft_ms, decode_s = dist.max_across(
        [(t_prefill - t0) * 1e3, (first_at - t0) * 1e3, decode_s], info.device
    )

    diff = same_next = scale = None
    if base is not None:
        plan = model.final_norm(x)  # (S, hidden)
        mine, theirs = model.logits(plan[-1:]), model.logits(base[-1:])  # (1, vocab) each
        diff = max((plan - base).abs().max().item(), (mine - theirs).abs().max().item())
        # the scale a reader needs: a bf16 prefill rounds logits of 40 by about 0.25, split or not
        scale = max(base.abs().max().item(), theirs.abs().max().item())
        same_next = bool(mine.argmax() == theirs.argmax())
    r = {
        "prompt_tokens": s,
        "chunk_tokens": chunk_sizes(bounds),
        "plan_bucket": job.bucket,
        "generated_ids": generated,
        "generated_tokens": len(generated),
        "stopped": "eos" if generated and generated[-1] in stop else "max_new_tokens",
        "prefill_ms": round(times["plan"] if times else prefill_ms, 3),
        "prefill_timed": f"typical of {cfg.repeats}" if times else "the request",
        "baseline_prefill_ms": round(times["baseline"], 3) if cfg.compare else None,
        "vs_baseline": change.triple() if change else None,
        "max_abs_diff": diff,
        "compared_abs_max": scale,  # the largest |value| of the baseline's hidden and last logits
        "same_next_token": same_next,  # the split's greedy next token is the baseline's
        "ttft_ms": round(ttft_ms, 3),
        "decode_tok_s": round((len(generated) - 1) / decode_s, 2) if decode_s > 0 else None,
    }
    if codec is not None:
        r = {"prompt": job.text, "generated_text": codec.decode(generated)} | r
    if job.note:
        r["note"] = job.note
    return r


def _run_batched(model: TPModel, info: DistInfo, cfg: RunJob, codec: TextCodec | None, stop) -> int:
    """--max-seqs: the prompts under continuous batching (run.batch); rank 0 prints each prompt's
    JSON line as it ends, then the batch's table and the --json document."""
    from isotune.commands.run.tables import show_batched

    lines: dict[int, dict] = {}
    # as the one-at-a-time path: the process's first prefill pays for allocations untimed, and
    # the clock starts with every rank at the barrier, not when rank 0 happens to get there
    first = torch.tensor(cfg.requests[0].ids, device=info.device)  # (S,)
    for _ in range(cfg.warmup):
        prefill(model, first, [0, len(first)])
    dist.barrier(info)
    dist.synchronize(info.device)
    t0 = time.perf_counter()

    def done(i: int, rec: dict) -> None:
        if not info.is_main:
            return
        req = cfg.requests[i]
        head = {"index": i} | (
            {"prompt": req.text, "generated_text": codec.decode(rec["generated_ids"])} if codec else {}
        )
        lines[i] = head | {"prompt_tokens": len(req.ids)} | rec
        print(json.dumps(lines[i], ensure_ascii=False), flush=True)

    def say(line: str) -> None:
        if info.is_main:
            print(line, file=sys.stderr, flush=True)

    prompts = [req.ids for req in cfg.requests]
    run_batched(model, cfg.batching, prompts, cfg.align, cfg.max_new_tokens, stop, done, say)
    wall_s = dist.max_across([time.perf_counter() - t0], info.device)[0]
    if info.is_main:
        results = [lines[i] for i in sorted(lines)]
        heading = f"isotune run: {title(model, info)}"
        summary = show_batched(results, heading, wall_s, cfg.batching.max_seqs)
        if cfg.json_path:
            atomic_write_text(cfg.json_path, _prompts_document(heading, results, summary))
    return 0


def _prompts_document(heading: str, lines: list[dict], summary) -> str:
    """--prompts --json: one JSON document, the JSON lines already printed in an array and the
    summary, whichever path (one at a time, or batched) ran them."""
    return json.dumps({"title": heading, "prompts": lines, "summary": summary}, indent=1, ensure_ascii=False) + "\n"


def _report(model: TPModel, info: DistInfo, cfg: RunJob, results: list[dict], lines: list[dict]) -> None:
    """Rank 0: the table (stderr when stdout carries the answer) and the --json file (with
    --prompts one JSON document: the lines already printed, in an array, and the summary)."""
    from isotune.commands.run.tables import bucket_summary, show_prompts, show_run

    heading = f"isotune run: {title(model, info)}"
    if cfg.jsonl:
        show_prompts(results, heading, cfg.compare)
        text = _prompts_document(heading, lines, bucket_summary(results, cfg.compare))
    else:
        show_run(results[0], heading, stderr=cfg.text)
        text = json.dumps(results[0], indent=2, ensure_ascii=False) + "\n"
    if cfg.json_path:
        atomic_write_text(cfg.json_path, text)


def _trace(model: TPModel, info: DistInfo, job: Request, cfg: RunJob, timed: dict) -> None:
    """One traced prefill per run (after an untraced warm-up), every rank's events to rank 0,
    which writes the Chrome trace and/or the timeline. Both say that this is one more prefill
    than the table's, and carry the table's times (`timed`) beside their own."""
    ids = torch.tensor(job.ids, device=info.device)  # (S,)
    s = ids.shape[0]
    runs = ({"baseline": [0, s]} if cfg.compare else {}) | {"plan": chunk_bounds(s, job.ratios, cfg.align)}
    events = {}
    for name, bounds in runs.items():
        prefill(model, ids, bounds)
        dist.barrier(info)
        dist.synchronize(info.device)
        mine: list[dict] = []
        prefill(model, ids, bounds, trace=mine)
        events[name] = dist.gather_objects(mine, info)
    if not info.is_main:
        return
    from isotune.commands.run.tables import tokens_text

    heading = f"{title(model, info)}, {s} tokens, plan {tokens_text(chunk_sizes(runs['plan']))}"
    table = f"plan {timed['prefill_ms']:.1f} ms" + (
        f", baseline {timed['baseline_prefill_ms']:.1f} ms" if timed["baseline_prefill_ms"] is not None else ""
    )
    note = f"the table's ({timed['prefill_timed']}, slowest rank): {table}"
    if cfg.trace_path:
        from isotune.viz.trace import trace_json

        meta = {"title": heading, "bounds": {name: b for name, b in runs.items()}, "timed_separately": note}
        atomic_write_text(cfg.trace_path, trace_json(events, meta))
    if cfg.timeline_path:
        from isotune.viz.timeline import timeline_png

        ranks0 = {n: ranks[0] for n, ranks in events.items()}
        atomic_write_bytes(cfg.timeline_path, timeline_png(ranks0, heading, note))
