"""The typer app, the flags several commands share, and how a command hands its flags to
isotune.commands. The cli layer (this, cli.py, cli_tools.py) is the only one that imports typer."""

from __future__ import annotations

import importlib
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperGroup


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

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Preset name (isotune models lists them) or a Hugging Face checkpoint folder."),
]
TpOpt = Annotated[
    Optional[int],
    typer.Option("--tp", help="Tensor-parallel ranks to spawn locally (default 1; under torchrun/netlab: WORLD_SIZE)."),
]
LayersOpt = Annotated[
    Optional[int], typer.Option("--layers", help="Keep only the first N layers (timing needs only a few).")
]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="auto (the checkpoint's; float32 checkpoints and presets run bfloat16), float32, bfloat16, float16.",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when visible), cpu or cuda.")]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="Fuse RMSNorm, RoPE and SwiGLU with torch.compile (seconds up front; pays off where launches "
        "bound the GPU: see isotune doctor).",
        metavar="",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Use a plan made for another model or TP size, or a plan or profile made in another setting "
        "(dtype, backend, device, interconnect, --compile, NCCL knobs), with a warning. A profile of another "
        "model or TP size is refused still: its costs say nothing here.",
        metavar="",
    ),
]
CommCtasOpt = Annotated[
    Optional[str],
    typer.Option(
        "--comm-ctas",
        help="GPUs: the most CTAs (SMs) NCCL's all-reduce may take, so more are left to the compute it "
        "hides behind (NCCL's maxCTAs; default: NCCL's choice). Recorded in profiles and plans.",
    ),
]
ThreadsOpt = Annotated[
    int, typer.Option("--threads", help="Compute threads per rank on CPU; 1 keeps ranks from fighting over cores.")
]


def _version(value: bool) -> None:
    if value:
        from isotune import __version__

        print(f"isotune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True, metavar=""),
    ] = False,
) -> None:
    """Autotuned intra-sequence overlap (ISO) for tensor-parallel LLM prefill."""


def _forward(command: str, flags: dict) -> None:
    """Hand a command's flags (its parameters, as keywords) to isotune.commands.<command>.<command>,
    imported only now so that --help stays fast, and exit with what it returns."""
    module = importlib.import_module(f"isotune.commands.{command}")
    raise typer.Exit(getattr(module, command)(**flags))
