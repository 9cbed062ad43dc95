"""The commands around the prefill ones: estimate (what ISO would save on catalog hardware),
doctor (validate a machine), models and show."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from isotune.cli_app import Command, DeviceOpt, _forward, app


@app.command(cls=Command)
def estimate(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Preset or checkpoint folder (its config).")
    ] = "llama2-70b",
    layers: Annotated[Optional[int], typer.Option("--layers", help="Keep only the first N layers.")] = None,
    seq_lens: Annotated[str, typer.Option("--seq-lens", help="Prompt lengths.")] = "1024,2048,4096,8192,16384",
    hardware: Annotated[
        Optional[str],
        typer.Option("--hardware", help="Catalog entries (profiles/hardware), comma-separated (default: every GPU)."),
    ] = None,
    tp: Annotated[str, typer.Option("--tp", help="TP sizes, comma-separated.")] = "4,8",
    dtype: Annotated[str, typer.Option("--dtype", help="auto (bfloat16 for presets), bfloat16 or float16.")] = "auto",
    max_chunks: Annotated[int, typer.Option("--max-chunks", help="Most chunks a tuned split may have.")] = 4,
    plot: Annotated[Optional[str], typer.Option("--plot", help="PNG: saving vs length, a line per hardware.")] = None,
    json_out: Annotated[Optional[str], typer.Option("--json", help="The rows as JSON.")] = None,
) -> None:
    """Predict what ISO would save on GPUs you don't have (catalog x TP x length; nothing measured)."""
    _forward("estimate", locals())


@app.command(cls=Command)
def doctor(
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for report.md, report.json and figures.")] = (
        "isotune-doctor"
    ),
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="Preset to check (default llama3-8b on GPU, small on CPU).")
    ] = None,
    layers: Annotated[Optional[int], typer.Option("--layers", help="Layers of it to build (default 2).")] = None,
    checkpoint: Annotated[
        Optional[str],
        typer.Option("--checkpoint", help="A Hugging Face checkpoint folder to check ISO == baseline on."),
    ] = None,
    seq_lens: Annotated[
        Optional[str],
        typer.Option("--seq-lens", help="Prompt lengths (default 1024,2048,4096,8192 on GPU; 256,512,1024 on CPU)."),
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed prefills per variant.")] = 5,
    device: DeviceOpt = "auto",
    tp: Annotated[
        Optional[int], typer.Option("--tp", help="Ranks for profile/search/bench (default: every GPU; 2 on CPU).")
    ] = None,
    skip_tests: Annotated[
        bool, typer.Option("--skip-tests", help="Do not run the CUDA test suite.", metavar="")
    ] = False,
    time_limit: Annotated[
        Optional[float],
        typer.Option(
            "--time-limit",
            help="Seconds doctor may take (a machine held for a fixed time): a child command is stopped "
            "when they run out, later checks are skipped, and the report says so.",
        ),
    ] = None,
) -> None:
    """Validate this machine end to end (GPU first; on CPU what it can) and write a readable report."""
    _forward("doctor", locals())


@app.command(cls=Command)
def models() -> None:
    """List the built-in model presets with their shapes (any of them works as --model)."""
    _forward("models", locals())


@app.command(cls=Command)
def show(
    path: Annotated[
        str,
        typer.Argument(
            help="A plan or profile YAML, or a study storage (journal:FILE, sqlite:///...).", metavar="PATH"
        ),
    ],
    study: Annotated[
        Optional[str], typer.Option("--study", help="With a storage: list this study's trials one by one.")
    ] = None,
) -> None:
    """Render a plan, a profile, or the studies in a storage as tables."""
    _forward("show", locals())
