"""The typer app: thin commands over the library. The only module that imports typer.

Every command validates its input in this process first (bad input: one line on stderr, exit
2), then hands a plain config to the ranks through `dist.launch`.
"""

from __future__ import annotations

import sys
from pathlib import Path
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
        Optional[int],
        typer.Option("--chunks", "-k", help="Chunks to split the prompt into (default 2; 1 = the unsplit baseline)."),
    ] = None,
    ratios: Annotated[
        Optional[str], typer.Option("--ratios", help="Split ratios, e.g. 0.6,0.4 (default: even).")
    ] = None,
    align: Annotated[
        Optional[int],
        typer.Option("--align", help="Chunk boundaries round to multiples of this (default 16 on CPU, 64 on GPU)."),
    ] = None,
    plan: Annotated[
        Optional[str],
        typer.Option("--plan", help="A plan from isotune search: its bucket for the prompt picks the split."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Use a plan made for another model or TP size (with a warning).")
    ] = False,
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
    trace: Annotated[
        Optional[str],
        typer.Option("--trace", help="Write a Chrome/Perfetto trace of one prefill per rank (with --compare: both)."),
    ] = None,
    timeline: Annotated[
        Optional[str],
        typer.Option("--timeline", help="Write a PNG Gantt chart of rank 0 (baseline above plan with --compare)."),
    ] = None,
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
        plan_path=plan,
        force=force,
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
        trace_path=trace,
        timeline_path=timeline,
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
    from isotune.runtime import DEFAULT_ALIGN, check_seq_lens, resolve_target
    from isotune.spec import parse_dtype

    spec, tp, dev = resolve_target(model, layers, tp, device)
    check_writable(out, "--out")
    lens = _seq_lens(seq_lens)
    check_seq_lens(spec, lens, "--seq-lens")
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
    plan_paths: Annotated[
        Optional[list[str]],
        typer.Option("--plan", help="A plan from isotune search: measure its split per length (repeat to compare)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Use a plan made for another model or TP size (with a warning).")
    ] = False,
    profile_path: Annotated[
        Optional[str],
        typer.Option("--profile", help="A profile: print the cost model's predictions beside the measurements."),
    ] = None,
    align: Annotated[
        Optional[int], typer.Option("--align", help="Chunk alignment (default 16 on CPU, 64 on GPU; a plan's own).")
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
    from isotune.plan import check_fits, load_plan, split_for
    from isotune.profile import load_profile
    from isotune.runtime import DEFAULT_ALIGN, check_profile_fits, check_seq_lens, resolve_target
    from isotune.spec import parse_dtype

    spec, tp, dev = resolve_target(model, layers, tp, device)
    lens = _seq_lens(seq_lens)
    check_seq_lens(spec, lens, "--seq-lens")
    plans: list[dict[int, list[float]]] = []
    if plan_paths and (chunks is not None or ratios is not None):
        raise BadInput("give --plan or --chunks/--ratios, not both")
    for path in plan_paths or []:
        p = load_plan(path)
        for note in check_fits(p, spec.fingerprint(), f"{spec.name} ({spec.layers} layers)", tp, force):
            print(note, file=sys.stderr)
        if align is not None and align != p.align:
            raise BadInput(f"plan {path} was made for align {p.align}, not {align}: drop --align or use the same")
        align = p.align
        plans.append({})
        for s in lens:
            plans[-1][s], notes = split_for(p, s)
            for note in notes:
                print(f"{path}: {note}", file=sys.stderr)
    if chunks is not None or ratios is not None:
        r = parse_ratios(ratios, chunks or len(ratios.split(",")))
        plans.append({s: r for s in lens})
    align = align or DEFAULT_ALIGN[dev]
    for s in lens:
        chunk_bounds(s, [0.5, 0.5], align)
        for plan in plans:
            chunk_bounds(s, plan[s], align)
    prof = load_profile(profile_path) if profile_path else None
    if prof is not None:
        check_profile_fits(prof, spec, tp)
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
        plans=plans,
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
def search(
    out: Annotated[str, typer.Option("--out", "-o", help="Plan YAML to write.")],
    model: Annotated[
        Optional[str],
        typer.Option(
            "--model", "-m", help="Preset or checkpoint folder (default: tiny; with --objective model: the profile's)."
        ),
    ] = None,
    tp: TpOpt = None,
    layers: LayersOpt = None,
    dtype: DtypeOpt = "float32",
    seq_lens: Annotated[
        str,
        typer.Option(
            "--seq-lens", help="Prompt lengths to search; each owns a bucket up to its neighbours' midpoints."
        ),
    ] = "512,1024,2048,4096",
    trials: Annotated[
        int, typer.Option("--trials", help="Finished trials per length (the study's total, all workers).")
    ] = 30,
    max_chunks: Annotated[int, typer.Option("--max-chunks", help="Most chunks a split may have (1..8).")] = 4,
    align: Annotated[
        Optional[int],
        typer.Option("--align", help="Chunk boundaries on multiples of this (default 16 on CPU, 64 on GPU)."),
    ] = None,
    objective: Annotated[
        str, typer.Option("--objective", help="measured (the real executor) or model (the cost model of --profile).")
    ] = "measured",
    profile_path: Annotated[
        Optional[str],
        typer.Option(
            "--profile", help="A profile: seeds each study with the cost model's best; needed by --objective model."
        ),
    ] = None,
    storage: Annotated[
        Optional[str],
        typer.Option(
            "--storage", help="journal:FILE or an Optuna DB URL (default: journal file beside --out); resumable."
        ),
    ] = None,
    study_name: Annotated[
        Optional[str], typer.Option("--study-name", help="Study name prefix (one study per length: NAME-s<tokens>).")
    ] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe, or grid (every split on a 0.05 ratio grid).")] = "tpe",
    plots: Annotated[
        Optional[str],
        typer.Option("--plots", help="Folder for PNG plots: history and landscape per length, speedup summary."),
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed prefills before each trial.")] = 1,
    repeats: Annotated[
        int, typer.Option("--repeats", help="Timed prefills per trial (median of the slowest rank).")
    ] = 5,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of prompts, synthetic weights and the sampler.")] = 0,
) -> None:
    """Search chunk counts and split ratios per prompt length with Optuna; write an overlap plan."""
    from isotune import dist, searcher
    from isotune import search as search_mod
    from isotune.chunking import MAX_CHUNKS
    from isotune.files import check_writable
    from isotune.profile import load_profile
    from isotune.runtime import DEFAULT_ALIGN, check_profile_fits, check_seq_lens, resolve_target
    from isotune.spec import load_spec, parse_dtype
    from isotune.studies import default_storage

    if objective not in (search_mod.MEASURED, search_mod.MODEL):
        raise BadInput(f"--objective {objective!r} is unknown: use measured or model")
    if sampler not in (search_mod.TPE, search_mod.GRID):
        raise BadInput(f"--sampler {sampler!r} is unknown: use tpe or grid")
    if not 1 <= max_chunks <= MAX_CHUNKS:
        raise BadInput(f"--max-chunks {max_chunks} is out of range: use 1..{MAX_CHUNKS}")
    if trials < 1 or repeats < 1 or warmup < 0:
        raise BadInput("--trials and --repeats must be at least 1, --warmup at least 0")
    prof = load_profile(profile_path) if profile_path else None
    lens = _seq_lens(seq_lens)
    check_writable(out, "--out")
    dtype = parse_dtype(dtype)
    if objective == search_mod.MODEL:
        if prof is None:
            raise BadInput("--objective model needs --profile P.yaml (write one with isotune profile)")
        spec = load_spec(model, layers) if model else None
        prof_layers = int(prof.model["layers"])
        if spec is not None and spec.with_layers(prof_layers).fingerprint() != prof.model["fingerprint"]:
            raise BadInput(f"--profile was measured on {prof.model['name']!r}, not {model!r}: profile this model first")
        name = spec.name if spec else prof.model["name"]
        fingerprint = spec.fingerprint() if spec else prof.model["fingerprint"]
        sim_layers = spec.layers if spec else prof_layers
        dev = "cuda" if prof.topology.get("backend") == "nccl" else "cpu"
        tp, dtype = int(prof.topology["tp"]), prof.topology["dtype"]
        align = align or DEFAULT_ALIGN[dev]
        if spec is not None:
            check_seq_lens(spec, lens, "--seq-lens")
    else:
        spec, tp, dev = resolve_target(model or "tiny", layers, tp, device)
        check_seq_lens(spec, lens, "--seq-lens")
        name, fingerprint, sim_layers = spec.name, spec.fingerprint(), spec.layers
        align = align or DEFAULT_ALIGN[dev]
        if prof is not None:
            check_profile_fits(prof, spec, tp)
    if align < 1:
        raise BadInput(f"--align {align} must be at least 1")
    if lens[0] < align:
        raise BadInput(f"--seq-lens {lens[0]} is shorter than the {align}-token alignment: use longer lengths")
    if plots:
        from isotune.timeline import pyplot

        if not Path(plots).is_dir() and not Path(plots).parent.is_dir():
            raise BadInput(f"--plots {plots}: its parent folder does not exist: create it or pick another folder")
        if Path(plots).exists() and not Path(plots).is_dir():
            raise BadInput(f"--plots {plots} is a file: give a folder")
        pyplot()  # a missing matplotlib is a one-line hint before the search, not after it
    storage = storage or default_storage(out)
    cfg = search_mod.SearchConfig(
        model=model or name,
        layers=layers,
        dtype=dtype,
        seq_lens=lens,
        trials=trials,
        max_chunks=max_chunks,
        align=align,
        objective=objective,
        sampler=sampler,
        profile=prof,
        sim_layers=sim_layers,
        storage=storage,
        study_prefix=study_name or f"isotune-{name}-L{sim_layers}-tp{tp}-{dtype}-{dev}-{objective}",
        out=out,
        model_name=name,
        fingerprint=fingerprint,
        tp=tp,
        warmup=warmup,
        repeats=repeats,
        device=dev,
        threads=threads,
        seed=seed,
        plots_dir=plots,
    )
    if dist.launch_rank() == 0:  # only rank 0 touches the storage (under torchrun every rank runs this)
        search_mod.open_studies(cfg)  # a bad storage or a study made with other settings fails here, before launch
    if objective == search_mod.MODEL:
        raise typer.Exit(searcher.search_model(cfg))
    hint = searcher.resume_hint(cfg)
    raise typer.Exit(dist.launch(searcher.search_worker, tp, cfg, device=dev, threads=threads, interrupt_hint=hint))


@app.command()
def show(
    path: Annotated[
        str, typer.Argument(help="A plan or profile YAML, or a study storage (journal:FILE, sqlite:///...).")
    ],
    study: Annotated[
        Optional[str], typer.Option("--study", help="With a storage: list this study's trials one by one.")
    ] = None,
) -> None:
    """Render a plan, a profile, or the studies in a storage as tables."""
    from isotune.plan import is_plan_file, load_plan
    from isotune.profile import load_profile
    from isotune.show import show_plan, show_profile, show_studies

    if path.startswith("journal:") or "://" in path:
        show_studies(path, study)
    elif study is not None:
        raise BadInput(
            "--study needs a storage URL as the argument, e.g. isotune show journal:plan.study.log --study NAME"
        )
    elif is_plan_file(path):
        show_plan(load_plan(path), path)
    else:
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
