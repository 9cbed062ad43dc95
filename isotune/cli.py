"""The prefill commands' flags and help text (run, profile, bench, search), and the console
entry; each command forwards to isotune.commands. With cli_app.py and cli_tools.py, the only
modules that import typer.

Every command validates its input in this process first (bad input: one line on stderr, exit
2), then hands a plain config to the ranks.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

try:  # typer >= 0.20 vendors its own click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException, UsageError

from isotune.cli_app import (
    Command,
    CommCtasOpt,
    CompileOpt,
    DeviceOpt,
    DtypeOpt,
    ForceOpt,
    LayersOpt,
    ModelOpt,
    ThreadsOpt,
    TpOpt,
    _forward,
    app,
)
from isotune.core.errors import EXIT_BAD_INPUT, BadInput


@app.command(cls=Command)
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
        bool,
        typer.Option("--chat", help="Wrap the prompt in the checkpoint's chat template (a user message).", metavar=""),
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
    dtype: DtypeOpt = "auto",
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Also run the unsplit baseline; report both times and the max abs difference.",
            metavar="",  # a flag: typer would show <bool> as if it took a value
        ),
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
    compile: CompileOpt = False,
    comm_ctas: CommCtasOpt = None,
    cuda_graphs: Annotated[
        bool,
        typer.Option(
            "--cuda-graphs",
            help="GPUs: replay each decode step as one CUDA graph (one launch instead of dozens per layer).",
            metavar="",
        ),
    ] = False,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed prefills before timing.")] = 1,
    repeats: Annotated[
        Optional[int],
        typer.Option(
            "--repeats",
            help="Timed prefills per variant (typical: trimmed mean of the slowest rank); default 10, "
            "0 for text prompts without --compare (the request alone is timed).",
        ),
    ] = None,
) -> None:
    """Text in, text out: prefill with the prompt's ISO split, decode greedily, stream the answer.

    --compare also runs the unsplit baseline beside it; the numbers go to stderr."""
    _forward("run", locals())


@app.command(cls=Command)
def profile(
    out: Annotated[str, typer.Option("--out", "-o", help="Profile YAML to write.")],
    model: ModelOpt = "tiny",
    tp: TpOpt = None,
    layers: LayersOpt = None,
    dtype: DtypeOpt = "auto",
    seq_lens: Annotated[
        str, typer.Option("--seq-lens", help="Prompt lengths the profile must cover.")
    ] = "512,1024,2048",
    align: Annotated[
        Optional[int], typer.Option("--align", help="Token alignment of chunk shapes (default 16 on CPU, 64 on GPU).")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed repeats per measurement (trimmed mean).")] = 5,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic weights.")] = 0,
    compile: CompileOpt = False,
    comm_ctas: CommCtasOpt = None,
    hardware: Annotated[
        Optional[str],
        typer.Option(
            "--hardware",
            help="Compute the profile from a catalog entry (profiles/hardware: h100-sxm, rtx4090, ...) "
            "instead of measuring: GPUs you do not have. Needs no ranks.",
        ),
    ] = None,
) -> None:
    """Measure a model's TP layer compute and the all-reduce (or compute them: --hardware); write a profile.

    With --hardware the costs come from a catalog GPU's specs instead of measurements."""
    _forward("profile", locals())


@app.command(cls=Command)
def bench(
    model: ModelOpt = "tiny",
    tp: TpOpt = None,
    layers: LayersOpt = None,
    dtype: DtypeOpt = "auto",
    seq_lens: Annotated[str, typer.Option("--seq-lens", help="Prompt lengths to measure.")] = "512,1024,2048",
    chunks: Annotated[
        Optional[int], typer.Option("--chunks", "-k", help="Also measure this split (with --ratios) as the plan.")
    ] = None,
    ratios: Annotated[
        Optional[str], typer.Option("--ratios", help="Split ratios of that plan (default: even).")
    ] = None,
    plan_paths: Annotated[
        Optional[list[str]],
        typer.Option(
            "--plan",
            help="A plan from isotune search: measure its split per length (repeat to compare).",
            metavar="<file>",
        ),
    ] = None,
    force: ForceOpt = False,
    profile_path: Annotated[
        Optional[str],
        typer.Option("--profile", help="A profile: print the cost model's predictions beside the measurements."),
    ] = None,
    align: Annotated[
        Optional[int], typer.Option("--align", help="Chunk alignment (default 16 on CPU, 64 on GPU; a plan's own).")
    ] = None,
    json_out: Annotated[Optional[str], typer.Option("--json", help="Write the records as JSON here.")] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed rounds first.")] = 1,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed rounds (trimmed mean of the slowest rank).")] = 10,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of prompts and synthetic weights.")] = 0,
    compile: CompileOpt = False,
    comm_ctas: CommCtasOpt = None,
) -> None:
    """Baseline vs ISO 50/50 (vs a plan) vs compute-only, comm-only and ideal, side by side."""
    _forward("bench", locals())


@app.command(cls=Command)
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
    dtype: DtypeOpt = "auto",
    seq_lens: Annotated[
        str,
        typer.Option(
            "--seq-lens", help="Prompt lengths to search; each owns a bucket up to its neighbours' midpoints."
        ),
    ] = "512,1024,2048,4096",
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
        int, typer.Option("--repeats", help="Timed prefills per trial (trimmed mean of the slowest rank).")
    ] = 5,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of prompts, synthetic weights and the sampler.")] = 0,
    compile: CompileOpt = False,
    comm_ctas: Annotated[
        Optional[str],
        typer.Option(
            "--comm-ctas",
            help="GPUs: NCCL CTA caps to try, e.g. 4,8,16: one search per cap, the fastest plan kept "
            "(each is written beside -o).",
        ),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Search chunk counts and split ratios per prompt length with Optuna; write an overlap plan."""
    _forward("search", locals())


from isotune import cli_tools  # noqa: E402, F401 - registers doctor, models and show after the above


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: one-line errors and exit 2 for bad input and bad flags."""
    try:
        code = app(args=argv, standalone_mode=False)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as e:
        if not e.format_message().strip():  # bare `isotune`: the help was shown, nothing went wrong
            return 0
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
