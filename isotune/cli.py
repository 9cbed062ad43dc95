"""The command line: the typer app, every flag defined once (name, type, help), each command a
few lines that forward its flags to isotune.commands, and the console entry. The only module
that imports typer.

A flag two commands share is one `Annotated` alias below; its default may differ per command
(typer shows it), its meaning and help do not (tests/test_cli_flags.py walks the app). The
flags of the target a command runs on (core.target.TargetFlags) are added to the prefill
commands by `with_target` and reach them as one object: a new target field is one entry in
TARGET_OPTIONS.

Every command validates its input in this process first (bad input: one line on stderr, exit
2), then hands a plain job to the ranks.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperGroup

try:  # typer >= 0.20 vendors its own click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException, UsageError

from isotune.core.credentials import redact
from isotune.core.errors import EXIT_BAD_INPUT, BadInput
from isotune.core.target import TargetFlags


class _FlagHelp:
    """--help shown with no value type (typer 0.29 renders it as '--help <bool>', as if the flag
    took a value; the project's other flags set metavar="" for the same reason)."""

    def get_help_option(self, ctx):
        opt = super().get_help_option(ctx)
        if opt is not None:
            opt.metavar = ""
        return opt


class Command(_FlagHelp, TyperCommand):
    pass


class Group(_FlagHelp, TyperGroup):
    pass


app = typer.Typer(
    cls=Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Autotuned intra-sequence overlap (ISO) for tensor-parallel LLM prefill.",
)


def _flag(help: str) -> dict:
    """A flag that takes no value: typer would show <bool> as if it took one."""
    return {"help": help, "metavar": ""}


# --- what a command runs on (core.target.TargetFlags) ---------------------------------------

ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        help="Preset name (isotune models lists them) or a Hugging Face checkpoint folder (default: tiny; "
        "search --objective model: the profile's model; estimate: llama2-70b; doctor: llama3-8b on GPU, small "
        "on CPU).",
    ),
]
TpOpt = Annotated[
    Optional[str],
    typer.Option(
        "--tp",
        help="Tensor-parallel size: ranks to spawn locally (default 1; under torchrun: WORLD_SIZE; doctor: every "
        "GPU, 2 on CPU). estimate takes several, comma-separated (default 4,8).",
    ),
]
LayersOpt = Annotated[
    Optional[int],
    typer.Option("--layers", help="Keep only the first N layers (timing needs only a few; doctor: 2)."),
]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="auto (the checkpoint's; float32 checkpoints and presets run bfloat16), float32, bfloat16, float16.",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when visible), cpu or cuda.")]
ThreadsOpt = Annotated[
    int, typer.Option("--threads", help="Compute threads per rank on CPU; 1 keeps ranks from fighting over cores.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the synthetic weights, seeded prompts and the sampler.")]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        **_flag(
            "Fuse RMSNorm, RoPE and SwiGLU with torch.compile (seconds up front; pays off where launches "
            "bound the GPU: see isotune doctor)."
        ),
    ),
]
CommCtasOpt = Annotated[
    Optional[str],
    typer.Option(
        "--comm-ctas",
        help="GPUs: the most CTAs (SMs) NCCL's all-reduce may take, so more are left to the compute it hides "
        "behind (NCCL's maxCTAs; default: NCCL's choice); on a GPU stand-in (--ranks 1 --link), the CTAs its "
        "link's hold takes (default 16). Recorded in profiles and plans. search takes several, "
        "e.g. 4,8,16: one search per cap, the fastest plan kept (each written beside -o).",
    ),
]

LinkOpt = Annotated[
    Optional[str],
    typer.Option(
        "--link",
        help="Emulate an interconnect (CPU ranks; on a GPU, its stand-in --ranks 1): each all-reduce runs for real "
        "(a stand-in has none) and is held until this link "
        "would deliver it. A rate (1gbit, 12GB/s), a latency and a rate (25us,12GB/s), or a catalog entry "
        "(rtx4090, h100-sxm: its all-reduce by message size at this TP). Files record it as emulated.",
    ),
]

RanksOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ranks",
        help="Processes to run: every rank (the default), or 1, a stand-in: rank 0's shard of the --tp model "
        "alone, every all-reduce the --link's time (what one device shows of a TP-N box; no rank skew).",
    ),
]

# name -> (the flag, its default): the parameters with_target adds, in --help's order
TARGET_OPTIONS = {
    "model": (ModelOpt, None),
    "tp": (TpOpt, None),
    "layers": (LayersOpt, None),
    "dtype": (DtypeOpt, "auto"),
    "device": (DeviceOpt, "auto"),
    "threads": (ThreadsOpt, 1),
    "seed": (SeedOpt, 0),
    "compile": (CompileOpt, False),
    "comm_ctas": (CommCtasOpt, None),
    "link": (LinkOpt, None),
    "ranks": (RanksOpt, None),
}


def with_target(fn):
    """A command that runs on a target: its own flags, then TARGET_OPTIONS, handed to `fn` as
    one TargetFlags (its `target` parameter)."""
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(fn, eval_str=True).parameters.values()
    ]
    own = [p for p in own if p.name != "target"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=flag, default=default)
        for name, (flag, default) in TARGET_OPTIONS.items()
    ]

    @functools.wraps(fn)
    def command(**flags):
        return fn(target=TargetFlags(**{name: flags.pop(name) for name in TARGET_OPTIONS}), **flags)

    params = added + own  # --model and --tp first, as a user looks for them
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


# --- what a command measures, and where it writes --------------------------------------------

SeqLensOpt = Annotated[
    str,
    typer.Option(
        "--seq-lens",
        help="Prompt lengths, comma-separated; a search gives each a plan bucket up to its neighbours' midpoints.",
    ),
]
AlignOpt = Annotated[
    Optional[int],
    typer.Option(
        "--align",
        help="Chunk boundaries on multiples of this many tokens (default 16 on CPU, 64 on GPU; a plan's own).",
    ),
]
RepeatsOpt = Annotated[
    int,
    typer.Option(
        "--repeats",
        help="Timed repeats of each measurement, interleaved (the typical of the slowest rank's); run: default 10, "
        "or 0 for text prompts without --compare (the request alone is timed).",
    ),
]
WarmupOpt = Annotated[int, typer.Option("--warmup", help="Untimed rounds before the timed ones.")]
JsonOpt = Annotated[
    Optional[str],
    typer.Option("--json", help="Write the results as JSON here (run --prompts: one JSON line per prompt)."),
]
OutOpt = Annotated[
    str,
    typer.Option("--out", "-o", help="Where to write: the profile or plan YAML; doctor: a folder for its report."),
]
ChunksOpt = Annotated[
    Optional[int],
    typer.Option(
        "--chunks",
        "-k",
        help="Split each prompt into this many chunks, evenly unless --ratios (run: without it or --plan, "
        "unsplit; 1 = the unsplit baseline; bench: measured as a plan beside 50/50).",
    ),
]
PackOpt = Annotated[
    Optional[int],
    typer.Option(
        "--pack",
        help="Time each length as a pack of prompts this many tokens long (the last one what is left), each "
        "attending to itself alone, as a serving engine batches a prefill; the split cuts the packed stream.",
    ),
]
RatiosOpt = Annotated[
    Optional[str], typer.Option("--ratios", help="Split ratios, e.g. 0.6,0.4 (default: even; alone: as many chunks).")
]
PlanOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--plan",
        help="A plan from isotune search: its bucket for each prompt length picks the split (bench: repeat to "
        "compare several).",
        metavar="<file>",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        **_flag(
            "Use a plan made for another model or TP size, or a plan or profile made in another setting "
            "(dtype, backend, device, interconnect, --compile, NCCL knobs), with a warning. A profile of another "
            "model or TP size is refused still: its costs say nothing here."
        ),
    ),
]
ProfileOpt = Annotated[
    Optional[str],
    typer.Option(
        "--profile",
        help="A profile: the cost model's predictions beside the measurements; search seeds each study with its "
        "best, and --objective model needs one.",
    ),
]
HardwareOpt = Annotated[
    Optional[str],
    typer.Option(
        "--hardware",
        help="Catalog entries (profiles/hardware: h100-sxm, rtx4090, ...): profile computes its profile from one "
        "instead of measuring (GPUs you do not have; no ranks), or with --ranks 1 measures the compute on this "
        "device and takes the entry's link (or --link's); estimate takes several, comma-separated (default: every GPU).",
    ),
]
MaxChunksOpt = Annotated[int, typer.Option("--max-chunks", help="Most chunks a split may have (1..8).")]


def _forward(module: str, flags: dict) -> None:
    """Hand a command's flags (its parameters, as keywords) to isotune.commands.<module>'s function
    of the command's name, imported only now so that --help stays fast; exit with what it returns."""
    name = module.split(".")[0]
    raise typer.Exit(getattr(importlib.import_module(f"isotune.commands.{module}"), name)(**flags))


def _version(value: bool) -> None:
    if value:
        from isotune import __version__

        print(f"isotune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, **_flag("Print the version and exit."))
    ] = False,
) -> None:
    """Autotuned intra-sequence overlap (ISO) for tensor-parallel LLM prefill."""


# --- the prefill commands ---------------------------------------------------------------------


@app.command(cls=Command)
@with_target
def run(
    target: TargetFlags,
    chunks: ChunksOpt = None,
    ratios: RatiosOpt = None,
    align: AlignOpt = None,
    plan: PlanOpt = None,
    force: ForceOpt = False,
    prompt: Annotated[
        Optional[str], typer.Option("--prompt", "-p", help="Prompt text (needs a checkpoint with tokenizer.json).")
    ] = None,
    prompt_file: Annotated[
        Optional[str], typer.Option("--prompt-file", help="Read the prompt text from a file.")
    ] = None,
    prompts: Annotated[
        Optional[str],
        typer.Option(
            "--prompts",
            help='JSON Lines, one {"prompt": ...} or {"messages": [...]} per line: each with its plan bucket, '
            "one JSON line out per prompt, a summary per bucket.",
        ),
    ] = None,
    chat: Annotated[
        bool, typer.Option("--chat", **_flag("Wrap the prompt in the checkpoint's chat template (a user message)."))
    ] = False,
    chat_template_kwargs: Annotated[
        Optional[str],
        typer.Option(
            "--chat-template-kwargs",
            help="More chat template variables, as vLLM takes them: JSON, e.g. '{\"enable_thinking\": false}' "
            '(Qwen3 without its thinking); a --prompts line\'s own "chat_template_kwargs" adds to it.',
        ),
    ] = None,
    seq_len: Annotated[
        Optional[int], typer.Option("--seq-len", help="Length of a seeded random prompt (the default: 512).")
    ] = None,
    prompt_ids: Annotated[
        Optional[str], typer.Option("--prompt-ids", help="Text file of whitespace-separated token ids.")
    ] = None,
    max_new_tokens: Annotated[
        Optional[int],
        typer.Option(
            "--max-new-tokens", help="Greedy tokens to decode, fewer at end of sequence (128 for text, else 8)."
        ),
    ] = None,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare", **_flag("Also run the unsplit baseline; report both times and the max abs difference.")
        ),
    ] = False,
    json_out: JsonOpt = None,
    trace: Annotated[
        Optional[str],
        typer.Option("--trace", help="Write a Chrome/Perfetto trace of one prefill per rank (with --compare: both)."),
    ] = None,
    timeline: Annotated[
        Optional[str],
        typer.Option("--timeline", help="Write a PNG Gantt chart of rank 0 (baseline above plan with --compare)."),
    ] = None,
    cuda_graphs: Annotated[
        bool,
        typer.Option(
            "--cuda-graphs",
            **_flag("GPUs: replay each decode step as one CUDA graph (one launch instead of dozens per layer)."),
        ),
    ] = False,
    warmup: WarmupOpt = 1,
    repeats: RepeatsOpt = None,
    max_seqs: Annotated[
        int,
        typer.Option(
            "--max-seqs",
            help="With --prompts: sequences running at once (vLLM's max_num_seqs). Waiting prompts are "
            "prefilled together as one pack, split by the plan's bucket for its total tokens; running ones "
            "decode together, one forward a step. 1: one prompt after another.",
        ),
    ] = 1,
    max_batch_tokens: Annotated[
        int,
        typer.Option(
            "--max-batch-tokens",
            help="With --max-seqs: prompt tokens one pack may hold (vLLM's max_num_batched_tokens); a longer "
            "prompt is prefilled alone.",
        ),
    ] = 4096,
) -> None:
    """Text in, text out: prefill with the prompt's ISO split, decode greedily, stream the answer.

    --compare also runs the unsplit baseline beside it; the numbers go to stderr."""
    if plan and len(plan) > 1:
        raise BadInput("run takes one --plan (bench compares several)")
    plan = plan[0] if plan else None
    _forward("run.command", locals())


@app.command(cls=Command)
@with_target
def profile(
    target: TargetFlags,
    out: OutOpt,
    seq_lens: SeqLensOpt = "512,1024,2048",
    align: AlignOpt = None,
    repeats: RepeatsOpt = 5,
    hardware: HardwareOpt = None,
) -> None:
    """Measure a model's TP layer compute and the all-reduce (or compute them: --hardware); write a profile.

    With --hardware the costs come from a catalog GPU's specs instead of measurements."""
    _forward("profile.command", locals())


@app.command(cls=Command)
@with_target
def bench(
    target: TargetFlags,
    seq_lens: SeqLensOpt = "512,1024,2048",
    chunks: ChunksOpt = None,
    ratios: RatiosOpt = None,
    plan: PlanOpt = None,
    force: ForceOpt = False,
    profile: ProfileOpt = None,
    align: AlignOpt = None,
    json_out: JsonOpt = None,
    warmup: WarmupOpt = 1,
    repeats: RepeatsOpt = 10,
    pack: PackOpt = None,
) -> None:
    """Baseline vs ISO 50/50 (vs a plan) vs compute-only, comm-only and ideal, side by side."""
    _forward("bench.command", locals())


@app.command(cls=Command)
@with_target
def search(
    target: TargetFlags,
    out: OutOpt,
    seq_lens: SeqLensOpt = "512,1024,2048,4096",
    trials: Annotated[
        int, typer.Option("--trials", help="Measured trials per length (the study's total, all workers).")
    ] = 30,
    time_budget: Annotated[
        Optional[float],
        typer.Option(
            "--time-budget",
            help="Seconds for the trials of all lengths, split evenly (time one leaves passes on); validation is extra.",
        ),
    ] = None,
    max_chunks: MaxChunksOpt = 4,
    align: AlignOpt = None,
    objective: Annotated[
        str, typer.Option("--objective", help="measured (the real executor) or model (the cost model of --profile).")
    ] = "measured",
    profile: ProfileOpt = None,
    storage: Annotated[
        Optional[str],
        typer.Option(
            "--storage",
            help="journal:FILE or an Optuna DB URL (default: $ISOTUNE_STORAGE, else a journal file beside --out); "
            "resumable. Keep a password off the command line: postgresql://USER@HOST/DB reads PGPASSWORD or "
            "~/.pgpass, or put the whole URL in ISOTUNE_STORAGE; outputs show it as ***.",
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
    warmup: WarmupOpt = 1,
    repeats: RepeatsOpt = 5,
    force: ForceOpt = False,
    pack: PackOpt = None,
    revalidate: Annotated[
        bool,
        typer.Option(
            "--revalidate",
            **_flag(
                "Measure each length's validation again, even where its study stored one for the same "
                "candidates (a resumed search reuses it)."
            ),
        ),
    ] = False,
) -> None:
    """Search chunk counts and split ratios per prompt length with Optuna; write an overlap plan."""
    _forward("search.command", locals())


# --- the commands around them -----------------------------------------------------------------


@app.command(cls=Command)
def estimate(
    model: ModelOpt = None,
    layers: LayersOpt = None,
    seq_lens: SeqLensOpt = "1024,2048,4096,8192,16384",
    hardware: HardwareOpt = None,
    tp: TpOpt = None,
    dtype: DtypeOpt = "auto",
    max_chunks: MaxChunksOpt = 4,
    plot: Annotated[Optional[str], typer.Option("--plot", help="PNG: saving vs length, a line per hardware.")] = None,
    json_out: JsonOpt = None,
    measured: Annotated[
        Optional[str],
        typer.Option(
            "--measured",
            help="Stand-in profiles (profile --hardware NAME --tp N --ranks 1 on a device of that kind), "
            "comma-separated: where one fits a row's entry, TP size, model and dtype, its measured compute "
            "replaces the catalog's roofline.",
        ),
    ] = None,
) -> None:
    """Predict what ISO would save on GPUs you don't have (catalog x TP x length; a roofline, or a
    stand-in's measured compute)."""
    _forward("estimate.command", locals())


@app.command(cls=Command)
def doctor(
    out: OutOpt = "isotune-doctor",
    model: ModelOpt = None,
    layers: LayersOpt = None,
    checkpoint: Annotated[
        Optional[str],
        typer.Option("--checkpoint", help="A Hugging Face checkpoint folder to check ISO == baseline on."),
    ] = None,
    seq_lens: SeqLensOpt = None,
    repeats: RepeatsOpt = 5,
    device: DeviceOpt = "auto",
    tp: TpOpt = None,
    link: LinkOpt = None,
    skip_tests: Annotated[bool, typer.Option("--skip-tests", **_flag("Do not run the CUDA test suite."))] = False,
    time_limit: Annotated[
        Optional[float],
        typer.Option(
            "--time-limit",
            help="Seconds doctor may take (a machine held for a fixed time): a child command is stopped "
            "when they run out, later checks are skipped, and the report says so.",
        ),
    ] = None,
) -> None:
    """Validate this machine end to end (GPU first; on CPU what it can) and write a readable report.

    Lengths default to 1024,2048,4096,8192 on GPU, 256,512,1024 on CPU. --link: the pipeline on that link."""
    _forward("doctor.command", locals())


@app.command(cls=Command)
def models() -> None:
    """List the built-in model presets with their shapes (any of them works as --model)."""
    _forward("models", locals())


@app.command(cls=Command)
def show(
    path: Annotated[
        str,
        typer.Argument(
            help="A plan or profile YAML, or a study storage (journal:FILE, sqlite:///..., a plan's URL with *** "
            "for its password when ISOTUNE_STORAGE holds it).",
            metavar="PATH",
        ),
    ],
    study: Annotated[
        Optional[str], typer.Option("--study", help="With a storage: list this study's trials one by one.")
    ] = None,
) -> None:
    """Render a plan, a profile, or the studies in a storage as tables."""
    _forward("show", locals())


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: one-line errors and exit 2 for bad input and bad flags."""
    for stream in (sys.stdout, sys.stderr):  # piped, lines stay in the order they were said
        if not stream.isatty() and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    try:
        code = app(args=argv, standalone_mode=False)
    except BadInput as e:  # redacted once more: a message may quote a storage URL or its driver's words
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as e:
        if not e.format_message().strip():  # bare `isotune`: the help was shown, nothing went wrong
            return 0
        cmd = e.ctx.command_path if e.ctx else "isotune"
        print(f"error: {redact(e.format_message())} (see '{cmd} --help')", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ClickException as e:
        print(f"error: {redact(e.format_message())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0
