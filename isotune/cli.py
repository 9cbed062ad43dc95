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
