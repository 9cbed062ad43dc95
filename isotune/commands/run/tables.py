"""`isotune run`'s tables: one prompt's numbers, and for --prompts the time per plan bucket."""

from __future__ import annotations

from statistics import mean

from isotune.core.numbers import change_ci
from isotune.core.stats import mean_interval, verdict
from isotune.viz.tables import console, table


def tokens_text(chunk_tokens: list[int]) -> str:
    """'3 chunks (192 + 112 + 64 tokens)', or 'unsplit (40 tokens)'."""
    if len(chunk_tokens) == 1:
        return f"unsplit ({chunk_tokens[0]} tokens)"
    return f"{len(chunk_tokens)} chunks ({' + '.join(map(str, chunk_tokens))} tokens)"


def show_run(r: dict, title: str, stderr: bool = False) -> None:
    t = table(title=title)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("prompt tokens", str(r["prompt_tokens"]))
    if r["plan_bucket"]:
        t.add_row("plan bucket (tokens)", r["plan_bucket"])
    t.add_row("split", tokens_text(r["chunk_tokens"]))
    label = "ISO" if len(r["chunk_tokens"]) > 1 else "unsplit"
    t.add_row(f"{label} prefill ms ({r['prefill_timed']})", f"{r['prefill_ms']:.2f}")
    if r["baseline_prefill_ms"] is not None:
        t.add_row(f"baseline prefill ms ({r['prefill_timed']})", f"{r['baseline_prefill_ms']:.2f}")
        est, low, high = r["vs_baseline"]
        t.add_row(f"{label} vs baseline (paired)", f"{est:+.1%} (95% CI {low:+.1%}..{high:+.1%}): {verdict(low, high)}")
        nxt = "same next token" if r["same_next_token"] else "next token differs (a near-tie?)"
        diff = f"{r['max_abs_diff']:.3g} of values up to {r['compared_abs_max']:.3g}; {nxt}"
        t.add_row("max abs diff (hidden, last logits)", diff)
    t.add_row("time to first token ms", f"{r['ttft_ms']:.2f}")
    if r["decode_tok_s"] is not None:
        t.add_row("decode tokens/s", f"{r['decode_tok_s']:.1f}")
    stopped = "end of sequence" if r["stopped"] == "eos" else "--max-new-tokens"
    t.add_row("generated tokens", f"{r['generated_tokens']} (stopped by {stopped})")
    if "generated_text" not in r:
        gen = r["generated_ids"]
        t.add_row("generated ids", " ".join(map(str, gen[:16])) + (" …" if len(gen) > 16 else ""))
    t.caption = "measured here; times are the slowest rank's"
    console(stderr).print(t)


def bucket_summary(results: list[dict], compare: bool) -> list[dict]:
    """--prompts: one row per plan bucket (or per split without a plan), means over its prompts;
    what the table shows and what --json writes beside the prompts."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["plan_bucket"] or "-", len(r["chunk_tokens"])), []).append(r)
    rows = []
    for (bucket, chunks), rs in sorted(groups.items(), key=lambda kv: min(r["prompt_tokens"] for r in kv[1])):
        speeds = [r["decode_tok_s"] for r in rs if r["decode_tok_s"] is not None]
        row = {
            "bucket": bucket,
            "prompts": len(rs),
            "chunks": chunks,
            "prompt_tokens": mean(r["prompt_tokens"] for r in rs),
            "ttft_ms": mean(r["ttft_ms"] for r in rs),
            "prefill_ms": mean(r["prefill_ms"] for r in rs),
            "decode_tok_s": mean(speeds) if speeds else None,
        }
        if compare:
            row["baseline_prefill_ms"] = mean(r["baseline_prefill_ms"] for r in rs)
            row["vs_baseline"] = [mean(r["vs_baseline"][i] for r in rs) for i in range(3)]  # mean change and bounds
        rows.append(row)
    return rows


def show_prompts(results: list[dict], title: str, compare: bool) -> None:
    """--prompts: the bucket summary as a table, on stderr: stdout carries the JSON lines."""
    t = table(title=f"{title}: {len(results)} prompts, means per bucket")
    for name in ("bucket", "prompts", "chunks", "tokens", "TTFT\nms", "prefill\nms"):
        t.add_column(name, justify="right")
    if compare:
        t.add_column("baseline\nms", justify="right")
        t.add_column("vs\nbaseline", justify="right")
    t.add_column("decode\ntok/s", justify="right")
    for row in bucket_summary(results, compare):
        cells = [
            row["bucket"],
            str(row["prompts"]),
            str(row["chunks"]),
            f"{row['prompt_tokens']:.0f}",
            f"{row['ttft_ms']:.1f}",
            f"{row['prefill_ms']:.1f}",
        ]
        if compare:
            cells += [f"{row['baseline_prefill_ms']:.1f}", change_ci(row["vs_baseline"])]
        cells.append("-" if row["decode_tok_s"] is None else f"{row['decode_tok_s']:.1f}")
        t.add_row(*cells)
    timed = results[0]["prefill_timed"]
    t.caption = f"measured here, slowest rank. TTFT: the request's prefill and first token; prefill: {timed}" + (
        "; vs baseline: mean of the paired changes and of their 95% bounds" if compare else ""
    )
    console(stderr=True).print(t)


def show_batched(results: list[dict], title: str, wall_s: float, max_seqs: int) -> dict:
    """--max-seqs: what the batch did as a whole (on stderr: stdout carries the JSON lines), and
    the same as a dict for --json."""
    packs = {id(r["pack"]): r["pack"] for r in results}.values()  # a pack's prompts share its record
    generated = sum(r["generated_tokens"] for r in results)
    ttft = mean_interval([r["ttft_ms"] for r in results])
    queue = mean_interval([r["queue_ms"] for r in results])
    summary = {
        "prompts": len(results),
        "packs": len(packs),
        "max_seqs": max_seqs,
        "generated_tokens": generated,
        "wall_s": round(wall_s, 3),
        "generated_tok_s": round(generated / wall_s, 2) if wall_s > 0 else None,
        "ttft_ms": [round(x, 3) for x in ttft.triple()],
        "queue_ms": [round(x, 3) for x in queue.triple()],
    }
    t = table(title=f"{title}: {len(results)} prompts, up to {max_seqs} at once")
    t.add_column("what")
    t.add_column("value", justify="right")
    tokens = sum(p["tokens"] for p in packs)
    t.add_row(
        "prefill packs",
        f"{len(packs)} ({len(results) / len(packs):.1f} prompts, {tokens / len(packs):.0f} tokens each)",
    )
    t.add_row("generated tokens", f"{generated} in {wall_s:.1f} s: {summary['generated_tok_s']} tok/s")
    t.add_row("time to first token ms", f"{ttft.estimate:.1f} (95% CI {ttft.low:.1f}..{ttft.high:.1f})")
    t.add_row("queue wait ms", f"{queue.estimate:.1f} (95% CI {queue.low:.1f}..{queue.high:.1f})")
    t.caption = "measured here, rank 0's clock; every prompt arrives at the start: its wait and TTFT count from there"
    console(stderr=True).print(t)
    return summary
