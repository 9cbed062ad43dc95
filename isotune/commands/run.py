"""`isotune run`, the runtime: load a model on every rank, prefill one prompt with an ISO split
(and the unsplit baseline with --compare), then decode greedily from the KV cache.

`prepare_run` validates everything in the launching process, before any rank starts, so bad
input is one line and exit 2; `run_worker` is what each rank executes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from isotune.core.chunking import PLAN_OR_SPLIT, chunk_bounds, chunk_sizes, parse_ratios, resolve_align
from isotune.core.errors import BadInput
from isotune.core.files import atomic_write_bytes, atomic_write_text, check_writable
from isotune.core.plan import lookup, plan_for
from isotune.core.spec import ModelSpec, check_seq_lens, load_spec, parse_dtype
from isotune.core.stats import paired_change
from isotune.engine import dist
from isotune.engine.dist import DistInfo
from isotune.engine.executor import greedy_decode, prefill
from isotune.engine.model import TPModel, build_model, random_prompt
from isotune.engine.target import resolve_target
from isotune.engine.timing import time_prefills
from isotune.engine.topology import setting


@dataclass(kw_only=True)
class RunConfig:
    model: str
    layers: int | None
    tp: int
    ratios: list[float]
    align: int
    plan_bucket: str | None  # "min..max" of the plan bucket used, or None without a plan
    trace_path: str | None
    timeline_path: str | None
    prompt_ids: list[int]
    max_new_tokens: int
    dtype: str
    compare: bool
    json_path: str | None
    device: str
    threads: int
    seed: int
    warmup: int
    repeats: int


def read_prompt_ids(path: str, vocab: int) -> list[int]:
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"--prompt-ids {path} does not exist: give a text file of token ids")
    try:
        ids = [int(t) for t in p.read_text().split()]
    except (ValueError, UnicodeDecodeError):
        raise BadInput(
            f"--prompt-ids {path} holds something other than integers: write whitespace-separated token ids"
        ) from None
    if not ids:
        raise BadInput(f"--prompt-ids {path} is empty: write at least one token id")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise BadInput(f"--prompt-ids {path}: token id {bad[0]} is outside the vocabulary 0..{vocab - 1}")
    return ids


def run(
    *,
    seq_len: int | None,
    prompt_ids: str | None,
    plan: str | None,
    json_out: str | None,
    trace: str | None,
    timeline: str | None,
    **opts,
) -> int:
    """The `run` command (its flags as keywords): validate, then launch the ranks; the exit code."""
    if seq_len is None and prompt_ids is None:
        seq_len = 512
    cfg = prepare_run(
        seq_len=seq_len,
        prompt_ids=prompt_ids,
        plan_path=plan,
        json_path=json_out,
        trace_path=trace,
        timeline_path=timeline,
        **opts,
    )
    return dist.launch(run_worker, cfg.tp, cfg, device=cfg.device, threads=cfg.threads)


def prepare_run(
    *,
    model: str,
    layers: int | None,
    tp: int | None,
    chunks: int | None,
    ratios: str | None,
    align: int | None,
    plan_path: str | None,
    force: bool,
    seq_len: int | None,
    prompt_ids: str | None,
    max_new_tokens: int,
    dtype: str,
    compare: bool,
    json_path: str | None,
    device: str,
    threads: int,
    seed: int,
    warmup: int,
    repeats: int,
    trace_path: str | None = None,
    timeline_path: str | None = None,
) -> RunConfig:
    spec, tp, device = resolve_target(model, layers, tp, device)
    if plan_path and (chunks is not None or ratios is not None):
        raise BadInput(PLAN_OR_SPLIT)
    if (seq_len is None) == (prompt_ids is None):
        raise BadInput("give exactly one of --seq-len N or --prompt-ids FILE")
    ids = read_prompt_ids(prompt_ids, spec.vocab) if prompt_ids else random_prompt(seq_len, spec.vocab, seed)
    bucket = None
    if plan_path:
        plan, splits, notes = plan_for(plan_path, spec, tp, [len(ids)], force)
        ratio_list = splits[len(ids)]
        for note in notes:
            print(note, file=sys.stderr)
        align = resolve_align(align, device, plan.align, plan_path)
        b, _ = lookup(plan, len(ids))
        bucket = f"{b.min_tokens}..{b.max_tokens}"
    else:
        ratio_list = parse_ratios(ratios, 2 if chunks is None else chunks)
        align = resolve_align(align, device)
    chunk_bounds(len(ids), ratio_list, align)  # raises if the split does not fit the prompt
    if max_new_tokens < 0:
        raise BadInput(f"--max-new-tokens {max_new_tokens} must be 0 or more")
    if repeats < 1 or warmup < 0 or threads < 1:
        raise BadInput("--repeats and --threads must be at least 1, --warmup at least 0")
    fix = "use a shorter prompt or fewer new tokens"
    check_seq_lens(spec, [len(ids) + max_new_tokens], "prompt + new tokens =", fix)
    if json_path:
        check_writable(json_path, "--json")
    if trace_path:
        check_writable(trace_path, "--trace")
    if timeline_path:
        check_writable(timeline_path, "--timeline")
        from isotune.viz.png import pyplot

        pyplot()  # a missing matplotlib is a one-line hint now, not a failure after the run
    return RunConfig(
        model=model,
        layers=layers,
        tp=tp,
        ratios=ratio_list,
        align=align,
        plan_bucket=bucket,
        trace_path=trace_path,
        timeline_path=timeline_path,
        prompt_ids=ids,
        max_new_tokens=max_new_tokens,
        dtype=parse_dtype(dtype),
        compare=compare,
        json_path=json_path,
        device=device,
        threads=threads,
        seed=seed,
        warmup=warmup,
        repeats=repeats,
    )


@torch.inference_mode()
def run_worker(info: DistInfo, cfg: RunConfig) -> int:
    spec = load_spec(cfg.model, cfg.layers)
    dtype = getattr(torch, cfg.dtype)
    ids = torch.tensor(cfg.prompt_ids, device=info.device)  # (S,)
    s = ids.shape[0]
    bounds = chunk_bounds(s, cfg.ratios, cfg.align)
    model = build_model(spec, info, dtype, s + cfg.max_new_tokens, cfg.seed)

    variants = {"plan": bounds} | ({"baseline": [0, s]} if cfg.compare else {})
    samples: dict[str, list[float]] = {}
    times = time_prefills(model, info, ids, variants, cfg.warmup, cfg.repeats, samples=samples)
    change = paired_change(samples["baseline"], samples["plan"]) if cfg.compare else None

    if cfg.trace_path or cfg.timeline_path:
        traced = ({"baseline": [0, s]} if cfg.compare else {}) | {"plan": bounds}
        _trace(model, info, ids, traced, spec, cfg)

    diff = None
    if cfg.compare:
        base = model.final_norm(prefill(model, ids, [0, s]))  # (S, hidden)
    x = prefill(model, ids, bounds)  # (S, hidden), fills the cache
    if cfg.compare:
        plan = model.final_norm(x)
        diff = max(
            (plan - base).abs().max().item(), (model.logits(plan[-1:]) - model.logits(base[-1:])).abs().max().item()
        )
    generated = greedy_decode(model, x[-1:], s, cfg.max_new_tokens)

    result = {
        "prompt_tokens": s,
        "chunk_tokens": chunk_sizes(bounds),
        "generated_ids": generated,
        "prefill_ms": round(times["plan"], 3),
        "baseline_prefill_ms": round(times["baseline"], 3) if cfg.compare else None,
        "max_abs_diff": diff,
        "plan_bucket": cfg.plan_bucket,
        "vs_baseline": change.triple() if change else None,
    }
    if info.is_main:
        _show(spec, info, cfg, result)
        if cfg.json_path:
            atomic_write_text(cfg.json_path, json.dumps(result, indent=2) + "\n")
    return 0


def _trace(model: TPModel, info: DistInfo, ids: torch.Tensor, runs: dict, spec: ModelSpec, cfg: RunConfig) -> None:
    """One traced prefill per run (after an untraced warm-up), every rank's events to rank 0,
    which writes the Chrome trace and/or the timeline."""
    events = {}
    for name, bounds in runs.items():
        prefill(model, ids, bounds)
        dist.barrier(info)
        dist.synchronize(info)
        mine: list[dict] = []
        prefill(model, ids, bounds, trace=mine)
        events[name] = dist.gather_objects(mine, info)
    if not info.is_main:
        return
    sizes = chunk_sizes(runs["plan"])
    split = f"{len(sizes)} chunks ({' + '.join(map(str, sizes))} tokens)" if len(sizes) > 1 else "unsplit"
    title = f"{setting(info, spec.name, spec.layers, cfg.dtype)}, {ids.shape[0]} tokens, plan {split}"
    if cfg.trace_path:
        from isotune.viz.trace import trace_json

        meta = {"title": title, "bounds": {name: b for name, b in runs.items()}}
        atomic_write_text(cfg.trace_path, trace_json(events, meta))
    if cfg.timeline_path:
        from isotune.viz.timeline import timeline_png

        atomic_write_bytes(cfg.timeline_path, timeline_png({n: ranks[0] for n, ranks in events.items()}, title))


def _show(spec: ModelSpec, info: DistInfo, cfg: RunConfig, r: dict) -> None:
    from rich.table import Table

    from isotune.viz.tables import console

    t = Table(title=f"isotune run: {setting(info, spec.name, spec.layers, cfg.dtype)}")
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("prompt tokens", str(r["prompt_tokens"]))
    if r["plan_bucket"]:
        t.add_row("plan bucket (tokens)", r["plan_bucket"])
    t.add_row("chunks (tokens)", " + ".join(map(str, r["chunk_tokens"])))
    label = "ISO" if len(r["chunk_tokens"]) > 1 else "plan (unsplit)"
    t.add_row(f"{label} prefill ms (typical)", f"{r['prefill_ms']:.2f}")
    if r["baseline_prefill_ms"] is not None:
        t.add_row("baseline prefill ms (typical)", f"{r['baseline_prefill_ms']:.2f}")
        est, low, high = r["vs_baseline"]
        verdict = "within noise" if low <= 0 <= high else "faster" if high < 0 else "slower"
        t.add_row(f"{label} vs baseline (paired)", f"{est:+.1%} (95% CI {low:+.1%}..{high:+.1%}): {verdict}")
        t.add_row("max abs diff (hidden, last logits)", f"{r['max_abs_diff']:.3g}")
    gen = r["generated_ids"]
    t.add_row("generated ids", " ".join(map(str, gen[:16])) + (" …" if len(gen) > 16 else ""))
    console().print(t)
