"""The checks `isotune doctor` runs, one function each: each returns a Check (its status, a
one-line verdict with its numbers, its rows). The CUDA tests and the pipeline run as child
commands under doctor's time limits; the others run in doctor's own process on one device."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

import isotune
from isotune.commands.doctor import measure
from isotune.commands.doctor.child import run_child
from isotune.commands.doctor.report import CUT, FAIL, OK, SKIPPED, Check, chunking_png, launch_summary
from isotune.core.files import atomic_write_bytes, atomic_write_text
from isotune.core.stats import verdict
from isotune.engine.fused import EAGER
from isotune.engine.model import compile_model
from isotune.engine.rank import single

DECODE_STEPS = 64  # tokens each decode check generates; the preset leaves room for them


def checkout_tests() -> Path:
    """The source checkout's tests folder, beside the package (absent from a pip install)."""
    return Path(isotune.__file__).resolve().parents[1] / "tests"


def cuda_tests(dev: str, folder: Path, skip: bool, deadline: float | None = None) -> Check:
    name = "CUDA tests"
    if skip:
        return Check(name=name, status=SKIPPED, summary="--skip-tests")
    if dev != "cuda":
        return Check(name=name, status=SKIPPED, summary="no CUDA GPU visible: the cuda-marked tests need one")
    import importlib.util

    if importlib.util.find_spec("pytest") is None:
        return Check(name=name, status=SKIPPED, summary="pytest is not installed: pip install 'isotune[test]'")
    tests = checkout_tests()
    if not tests.is_dir():
        return Check(name=name, status=SKIPPED, summary=f"no test folder at {tests}: run doctor from a source checkout")
    # -v names each test as it ends: a run stopped at its limit still says how far it got; where
    # pytest-timeout is installed, a hung test fails alone instead of stopping the rest
    per_test = ["--timeout", "100"] if importlib.util.find_spec("pytest_timeout") else []
    r = run_child(
        [sys.executable, "-m", "pytest", "-v", "-m", "cuda", "-p", "no:cacheprovider", *per_test, str(tests)],
        tests.parent,
        deadline,
    )
    atomic_write_text(folder / "cuda-tests.txt", r.stdout + r.stderr)
    if r.returncode is None:
        status = CUT if r.cut else FAIL
        return Check(name=name, status=status, summary=f"the cuda tests {r.stopped}", detail=r.stdout[-3000:])
    last = (r.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")  # -v frames it in =
    return Check(name=name, status=OK if r.returncode == 0 else FAIL, summary=last, detail=r.stdout[-3000:])


def iso(preset, model: str, layers: int, checkpoint: str | None, dev: str, align: int, lens: list[int]) -> Check:
    """float32 (where an off-by-one in the chunked path stands far outside a tight limit) and
    bfloat16 (what a GPU serves in, held against the float32 logits: ISO may round, but no worse
    than the unsplit prefill does), for the preset and the checkpoint."""
    s = min(lens[-1], 1024)
    pairs = [(lambda: measure.build(model, layers, "float32", s, dev), preset)]
    if checkpoint:
        pairs.append(
            (
                lambda: measure.build(checkpoint, layers, "float32", s, dev),
                lambda: measure.build(checkpoint, layers, "bfloat16", s, dev),
            )
        )
    rows = []
    for full, half in pairs:
        m = full()
        ref = measure.unsplit_logits(m, s)  # (S, vocab) fp32
        wide = [
            {"model": m.spec.name, "dtype": "float32", "tokens": s} | r
            for r in measure.iso_equals_baseline(m, s, align)
        ]
        del m  # one model at a time on the device (and the preset's, cached)
        m = half()
        dtype = str(m.dtype).removeprefix("torch.")
        rows += [
            {"model": m.spec.name, "dtype": dtype, "tokens": s} | r
            for r in measure.iso_equals_baseline(m, s, align, reference=ref)
        ] + wide
        del m, ref
    bad = [r for r in rows if not r["ok"]]
    worst = max(rows, key=lambda r: r["err"] / r["tol"] if r["tol"] > 0 else math.inf)
    if worst["dtype"] == "float32":
        closest = f"{worst['err']:.3g} from the unsplit prefill (limit {worst['tol']:.3g})"
    else:
        closest = (
            f"{worst['err']:.3g} from the float32 logits (limit {worst['tol']:.3g}: {measure.HALF_FACTOR:g}x the "
            f"unsplit {worst['dtype']} prefill's own {worst['base_err']:.3g})"
        )
    where = "" if checkpoint else " (no --checkpoint given: a real checkpoint was not checked)"
    summary = (
        f"{len(rows) - len(bad)} of {len(rows)} splits within tolerance (bfloat16 and float32); the closest to its "
        f"limit: {worst['model']} {worst['dtype']} {worst['split']}, {closest}{where}"
    )
    return Check(name="ISO == baseline", status=FAIL if bad else OK, summary=summary, rows=rows)


def overhead(preset, layers, dev, align, lens, repeats, folder: Path) -> Check:
    m = preset()
    rows = measure.chunking_overhead(m, single(dev), lens, align, repeats)
    where = f"{m.spec.name} ({layers} layers), tp 1 on {dev}, bfloat16, measured"
    atomic_write_bytes(folder / "chunking.png", chunking_png(rows, where))
    worst = max(rows, key=lambda r: r["change"])
    two = ", ".join("{:+.1%} at {}".format(r["change"], r["seq_len"]) for r in rows if r["chunks"] == 2)
    summary = (
        f"measured at tp 1 on {dev}: 2 chunks cost {two}; the worst, "
        f"{worst['chunks']} chunks at {worst['seq_len']} tokens, {worst['change']:+.1%} "
        f"(95% CI {worst['low']:+.1%}..{worst['high']:+.1%}); figure chunking.png"
    )
    return Check(name="chunking overhead", status=OK, summary=summary, rows=rows)


def parts(preset, dev, align, lens) -> Check:
    s = max(lens)
    rows = measure.chunking_parts(preset(), s, align)
    if not rows:
        return Check(name="chunking: by part", status=FAIL, summary="no part's GPU time could be separated")
    how = "the GPU's own time, kernels queued first" if dev == "cuda" else "measured on CPU"
    said = ", ".join(
        "{} {:.3g} -> {:.3g} ms ({:+.1%})".format(r["part"], r["unsplit_ms"], r["split_ms"], r["change"]) for r in rows
    )
    whole = sum(r["split_ms"] for r in rows) / sum(r["unsplit_ms"] for r in rows) - 1
    layer = "the layer" if len(rows) == 3 else f"the {len(rows)} parts timed (the others could not be separated)"
    summary = f"layer 0 at {s} tokens, unsplit -> 2 chunks ({how}): {said}; {layer} {whole:+.1%}"
    return Check(name="chunking: by part", status=OK, summary=summary, rows=rows)


def launches(preset, dev, align, lens) -> Check:
    name = "launch-bound"
    if dev != "cuda":
        return Check(name=name, status=SKIPPED, summary="CPU ranks: the host is the compute, no launches to wait on")
    from torch._dynamo.utils import counters

    s = min(lens)
    m, rows = preset(), []
    recompiled = 0
    try:
        for compiled in (False, True):
            if compiled:
                compile_model(m, decode=False)  # the same model, its elementwise steps fused
                graphs = counters["stats"]["unique_graphs"]
            rows += [{"compile": compiled, "tokens": s} | r for r in measure.launch_bound(m, s, align)]
            if compiled:
                recompiled = counters["stats"]["unique_graphs"] - graphs
        # counted once all timing in this process is done (a profiler run slows later launches)
        fused, m.ops = m.ops, EAGER
        kernels = {False: measure.layer_kernels(m, s), True: None}
        m.ops = fused
        kernels[True] = measure.layer_kernels(m, s)
        for r in rows:
            r["kernels"] = kernels[r["compile"]] if r["chunks"] == 1 else None
    finally:
        m.ops = EAGER  # the model stays what the other checks expect
    return Check(name=name, status=OK, summary=launch_summary(rows, s, recompiled), rows=rows)


def decode(preset, dev, lens, repeats) -> Check:
    name = "decode: CUDA graphs"
    if dev != "cuda":
        return Check(name=name, status=SKIPPED, summary="CUDA graphs need a GPU (run --cuda-graphs is refused on CPU)")
    m = preset()
    rows = measure.decode_speed(m, sorted({min(lens), max(lens)}), DECODE_STEPS, repeats)  # a short cache, a long one
    if not rows[0]["graph"]:
        return Check(name=name, status=FAIL, summary=f"no CUDA graph could be captured: {rows[0]['why']}", rows=rows)
    said = "; ".join(
        "{} cached: {:.0f} -> {:.0f} tok/s, decode time {:+.1%} (95% CI {:+.1%}..{:+.1%})".format(
            r["cache_tokens"], r["eager_tok_s"], r["graphed_tok_s"], r["change"], r["low"], r["high"]
        )
        for r in rows
    )
    differ = [f"{r['cache_tokens']} cached from token {r['first_diff']}" for r in rows if r["first_diff"] is not None]
    note = (
        f"; the tokens differ ({', '.join(differ)}): bf16 roundings of two kernels may flip a near-tie"
        if differ
        else ""
    )
    summary = (
        f"measured, eager -> graphed, {DECODE_STEPS} tokens, {m.spec.name} bfloat16, a graph over {m.max_len} "
        f"positions: {said}{note}"
    )
    return Check(name=name, status=OK, summary=summary, rows=rows)


def pipeline(
    model, layers, dev, tp, lens, folder: Path, deadline: float | None = None, link: str | None = None
) -> Check:
    name = "profile, search, bench"
    # one GPU still runs the three commands at tp 1: their CUDA paths (event timing, the host
    # lane, the held-stream layer times) run, though with no all-reduce there is nothing to win.
    # With a link (tp given by the caller), CPU ranks hold their all-reduces to it, and a GPU runs
    # as a stand-in for rank 0 of tp, its all-reduces the link's hold kernel
    n = tp or (max(1, torch.cuda.device_count()) if dev == "cuda" else 2)
    use = ",".join(map(str, lens[:2]))
    common = ["--model", model, "--layers", str(layers), "--tp", str(n), "--device", dev]
    stand_in = link is not None and dev == "cuda"
    if link is not None:
        common += ["--link", link, *(["--ranks", "1"] if stand_in else [])]
    # the check's studies stay in its folder, never in a database ISOTUNE_STORAGE names
    studies = ["--storage", f"journal:{folder / 'plan.study.log'}"]
    steps = [
        ["profile", *common, "--seq-lens", use, "--repeats", "3", "-o", str(folder / "profile.yaml")],
        ["search", *common, "--seq-lens", use, "--trials", "12", "--repeats", "3", *studies,
         "-o", str(folder / "plan.yaml")],
        ["bench", *common, "--seq-lens", use, "--plan", str(folder / "plan.yaml"), "--profile", str(folder / "profile.yaml"),
         "--json", str(folder / "bench.json")],
    ]  # fmt: skip
    log = []
    for args in steps:
        r = run_child([sys.executable, "-m", "isotune", *args], None, deadline)
        log.append(f"$ isotune {' '.join(args)}\n{r.stdout}{r.stderr}")
        atomic_write_text(folder / "pipeline.txt", "\n".join(log))
        if r.returncode is None:
            status = CUT if r.cut else FAIL
            return Check(name=name, status=status, summary=f"isotune {args[0]} {r.stopped}", detail=log[-1][-3000:])
        if r.returncode != 0:
            why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
            return Check(name=name, status=FAIL, summary=f"isotune {args[0]} failed: {why}", detail=log[-1][-3000:])
    import json

    recs = json.loads((folder / "bench.json").read_text())
    # a length the plan keeps unsplit runs the baseline itself: it has no change against it
    rows = [
        {"tokens": r["seq_len"], "baseline_ms": r["baseline_ms"], "iso5050_ms": r["iso5050_ms"], "plan_ms": r["plan_ms"]}
        | {"plan_chunks": r["plan_chunks"]}
        | dict(zip(("change", "low", "high"), r["plan_vs_baseline"] or (None, None, None), strict=True))
        for r in recs
    ]  # fmt: skip
    if link is not None:
        how = f"one GPU standing in for tp {n}, emulated {link}" if stand_in else f"gloo, emulated {link}"
    else:
        how = "NCCL" if dev == "cuda" else "gloo over loopback"
    said = "; ".join(
        "{}: {}".format(
            r["tokens"],
            "unsplit kept"
            if r["plan_chunks"] == 1
            else "{} chunks {:+.1%} (95% CI {:+.1%}..{:+.1%}{})".format(
                r["plan_chunks"],
                r["change"],
                r["low"],
                r["high"],
                ": within noise" if verdict(r["low"], r["high"]) == "within noise" else "",
            ),
        )
        for r in rows
    )
    summary = f"tp {n} ({how}), measured, the plan vs baseline: {said}; files profile.yaml, plan.yaml, bench.json"
    if n == 1:
        summary = (
            f"tp 1 on {dev}: one rank has no all-reduce to hide, so this shows profile, search and bench "
            f"run here, not what ISO wins (tp 2 or more does): {said}; files profile.yaml, plan.yaml, bench.json"
        )
    return Check(name=name, status=OK, summary=summary, rows=rows, detail=log[-1][-4000:])
