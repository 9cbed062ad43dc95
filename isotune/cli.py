"""The typer app: thin commands over the library. The only module that imports typer.

Every command validates its input in this process first (bad input: one line on stderr, exit
2), then hands a plain config to the ranks through `dist.launch`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

try:  # typer >= 0.20 vendors its own click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException, UsageError

from isotune.errors import EXIT_BAD_INPUT, BadInput

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Autotuned intra-sequence overlap (ISO) for tensor-parallel LLM prefill.",
)

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Preset name (see profiles/models) or a Hugging Face checkpoint folder.")
]
TpOpt = Annotated[
    Optional[int],
    typer.Option("--tp", help="Tensor-parallel ranks to spawn locally (default 1; under torchrun/netlab: WORLD_SIZE)."),
]
LayersOpt = Annotated[
    Optional[int], typer.Option("--layers", help="Keep only the first N layers (timing needs only a few).")
]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when visible), cpu or cuda.")]
ThreadsOpt = Annotated[
    int, typer.Option("--threads", help="Compute threads per rank on CPU; 1 keeps ranks from fighting over cores.")
]


@app.callback()
def _root() -> None:
    """Autotuned intra-sequence overlap (ISO) for tensor-parallel LLM prefill."""


@app.command()
def run(
    model: ModelOpt = "tiny",
    tp: TpOpt = None,
    layers: LayersOpt = None,
    chunks: Annotated[
        int, typer.Option("--chunks", "-k", help="Chunks to split the prompt into (1 = the unsplit baseline).")
    ] = 2,
    ratios: Annotated[
        Optional[str], typer.Option("--ratios", help="Split ratios, e.g. 0.6,0.4 (default: even).")
    ] = None,
    align: Annotated[
        Optional[int],
        typer.Option("--align", help="Chunk boundaries round to multiples of this (default 16 on CPU, 64 on GPU)."),
    ] = None,
    seq_len: Annotated[
        Optional[int], typer.Option("--seq-len", help="Length of a seeded random prompt (default 512).")
    ] = None,
    prompt_ids: Annotated[
        Optional[str], typer.Option("--prompt-ids", help="Text file of whitespace-separated token ids.")
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Greedy tokens to decode after the prefill.")
    ] = 8,
    dtype: DtypeOpt = "float32",
    compare: Annotated[
        bool,
        typer.Option("--compare", help="Also run the unsplit baseline; report both times and the max abs difference."),
    ] = False,
    json_out: Annotated[Optional[str], typer.Option("--json", help="Write the result as JSON here.")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random prompt and synthetic weights.")] = 0,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed prefills before timing.")] = 1,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed prefills (median of the slowest rank).")] = 5,
) -> None:
    """Prefill one prompt with an ISO split, optionally beside the baseline, then decode greedily."""
    from isotune import dist, runtime

    if seq_len is None and prompt_ids is None:
        seq_len = 512
    cfg = runtime.prepare_run(
        model=model,
        layers=layers,
        tp=tp,
        chunks=chunks,
        ratios=ratios,
        align=align,
        seq_len=seq_len,
        prompt_ids=prompt_ids,
        max_new_tokens=max_new_tokens,
        dtype=dtype,
        compare=compare,
        json_path=json_out,
        device=device,
        threads=threads,
        seed=seed,
        warmup=warmup,
        repeats=repeats,
    )
    raise typer.Exit(dist.launch(runtime.run_worker, cfg.tp, cfg, device=cfg.device, threads=threads))


def _seq_lens(text: str) -> list[int]:
    try:
        lens = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise BadInput(f"--seq-lens {text!r} does not parse: give comma-separated token counts like 512,1024") from None
    if not lens or lens[0] < 1:
        raise BadInput(f"--seq-lens {text!r} must be positive token counts")
    return lens


@app.command()
def profile(
    out: Annotated[str, typer.Option("--out", "-o", help="Profile YAML to write.")],
    model: ModelOpt = "tiny",
    tp: TpOpt = None,
    layers: LayersOpt = None,
    dtype: DtypeOpt = "float32",
    seq_lens: Annotated[
        str, typer.Option("--seq-lens", help="Prompt lengths the profile must cover.")
    ] = "512,1024,2048",
    align: Annotated[
        Optional[int], typer.Option("--align", help="Token alignment of chunk shapes (default 16 on CPU, 64 on GPU).")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed repeats per measurement (median).")] = 5,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic weights.")] = 0,
) -> None:
    """Measure a model's TP layer compute and the topology's all-reduce; write a Profile YAML."""
    from isotune import dist, profiler
    from isotune.files import check_writable
    from isotune.runtime import DEFAULT_ALIGN, resolve_target
    from isotune.spec import parse_dtype

    spec, tp, dev = resolve_target(model, layers, tp, device)
    check_writable(out, "--out")
    lens = _seq_lens(seq_lens)
    if repeats < 1:
        raise BadInput("--repeats must be at least 1")
    cfg = profiler.ProfileConfig(
        model=model,
        layers=layers,
        dtype=parse_dtype(dtype),
        seq_lens=lens,
        align=align or DEFAULT_ALIGN[dev],
        repeats=repeats,
        device=dev,
        threads=threads,
        seed=seed,
        out=out,
    )
    raise typer.Exit(dist.launch(profiler.profile_worker, tp, cfg, device=dev, threads=threads))


@app.command()
def bench(
    model: ModelOpt = "tiny",
    tp: TpOpt = None,
    layers: LayersOpt = None,
    dtype: DtypeOpt = "float32",
    seq_lens: Annotated[str, typer.Option("--seq-lens", help="Prompt lengths to measure.")] = "512,1024,2048",
    chunks: Annotated[
        Optional[int], typer.Option("--chunks", "-k", help="Also measure this split (with --ratios) as the plan.")
    ] = None,
    ratios: Annotated[
        Optional[str], typer.Option("--ratios", help="Split ratios of that plan (default: even).")
    ] = None,
    profile_path: Annotated[
        Optional[str],
        typer.Option("--profile", help="A profile: print the cost model's predictions beside the measurements."),
    ] = None,
    align: Annotated[
        Optional[int], typer.Option("--align", help="Chunk alignment (default 16 on CPU, 64 on GPU).")
    ] = None,
    json_out: Annotated[Optional[str], typer.Option("--json", help="Write the records as JSON here.")] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed rounds first.")] = 1,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed rounds (median of the slowest rank).")] = 5,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of prompts and synthetic weights.")] = 0,
) -> None:
    """Baseline vs ISO 50/50 (vs a plan) vs compute-only, comm-only and ideal, side by side."""
    from isotune import bench as bench_mod
    from isotune import dist
    from isotune.chunking import chunk_bounds, parse_ratios
    from isotune.files import check_writable
    from isotune.profile import load_profile
    from isotune.runtime import DEFAULT_ALIGN, resolve_target
    from isotune.spec import parse_dtype

    spec, tp, dev = resolve_target(model, layers, tp, device)
    lens = _seq_lens(seq_lens)
    align = align or DEFAULT_ALIGN[dev]
    if lens[-1] > spec.max_positions:
        raise BadInput(f"--seq-lens {lens[-1]} exceeds {spec.name}'s {spec.max_positions} positions")
    plan = None
    if chunks is not None or ratios is not None:
        r = parse_ratios(ratios, chunks or len(ratios.split(",")))
        plan = {s: r for s in lens}
    for s in lens:
        chunk_bounds(s, [0.5, 0.5], align)
        if plan:
            chunk_bounds(s, plan[s], align)
    prof = load_profile(profile_path) if profile_path else None
    if json_out:
        check_writable(json_out, "--json")
    if repeats < 1 or warmup < 0:
        raise BadInput("--repeats must be at least 1 and --warmup at least 0")
    cfg = bench_mod.BenchConfig(
        model=model,
        layers=layers,
        dtype=parse_dtype(dtype),
        seq_lens=lens,
        align=align,
        plan=plan,
        profile=prof,
        warmup=warmup,
        repeats=repeats,
        device=dev,
        threads=threads,
        seed=seed,
        json_path=json_out,
    )
    raise typer.Exit(dist.launch(bench_mod.bench_worker, tp, cfg, device=dev, threads=threads))


@app.command()
def show(path: Annotated[str, typer.Argument(help="A profile (or plan) YAML.")]) -> None:
    """Render a profile as tables."""
    from isotune.profile import load_profile
    from isotune.show import show_profile

    show_profile(load_profile(path), path)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: one-line errors and exit 2 for bad input and bad flags."""
    try:
        code = app(args=argv, standalone_mode=False)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "isotune"
        print(f"error: {e.format_message()} (see '{cmd} --help')", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ClickException as e:
        print(f"error: {e.format_message()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0
