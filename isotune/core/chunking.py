"""Split ratios -> chunk boundaries. Pure Python.

A prompt of S tokens split by ratios r_0..r_{k-1} (summing to 1) gets boundaries
0 = b_0 < b_1 < ... < b_k = S, each inner boundary rounded to a multiple of `align` so kernels
see friendly shapes; every chunk must hold at least `align` tokens (a one-chunk prompt may be
shorter).
"""

from __future__ import annotations

import math
from itertools import pairwise

from isotune.core.errors import BadInput

MAX_CHUNKS = 8
PLAN_OR_SPLIT = "give --plan or --chunks/--ratios, not both: the plan chooses the split"
RATIO_SUM_TOL = 1e-3
# chunk boundaries round to this many tokens by device: kernel-friendly shapes on GPUs (a wave
# quantum), finer on CPU where small shapes cost little extra
DEFAULT_ALIGN = {"cpu": 16, "cuda": 64}


def resolve_align(align: int | None, device: str, plan_align: int | None = None, plan: str = "") -> int:
    """--align, else the plan's, else the device default; a plan's own alignment may not be
    overridden (its ratios were searched on those boundaries)."""
    if align is not None and align < 1:
        raise BadInput(f"--align {align} must be at least 1")
    if plan_align is not None:
        if align is not None and align != plan_align:
            raise BadInput(f"plan {plan} was made for align {plan_align}, not {align}: drop --align or use the same")
        return plan_align
    return align if align is not None else DEFAULT_ALIGN[device]


def parse_seq_lens(text: str, flag: str = "--seq-lens") -> list[int]:
    """`--seq-lens 512,1024` -> sorted distinct positive token counts."""
    try:
        lens = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise BadInput(f"{flag} {text!r} does not parse: give comma-separated token counts like 512,1024") from None
    if not lens or lens[0] < 1:
        raise BadInput(f"{flag} {text!r} must be positive token counts")
    return lens


def parse_ratios(text: str | None, chunks: int) -> list[float]:
    """`--ratios 0.6,0.4`; None means an even split into `chunks` parts."""
    if not 1 <= chunks <= MAX_CHUNKS:
        raise BadInput(f"--chunks {chunks} is out of range: use 1..{MAX_CHUNKS}")
    if text is None:
        return [1.0 / chunks] * chunks
    try:
        ratios = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise BadInput(f"--ratios {text!r} does not parse: give comma-separated numbers like 0.6,0.4") from None
    return check_ratios(ratios, chunks, what="--ratios")


def asked_split(chunks: int | None, ratios: str | None) -> list[float]:
    """--chunks/--ratios: the split asked for (--ratios alone: as many chunks as it has ratios;
    --chunks alone: even)."""
    return parse_ratios(ratios, len(ratios.split(",")) if chunks is None else chunks)


def check_ratios(ratios: list[float], chunks: int | None = None, what: str = "ratios") -> list[float]:
    if chunks is not None and len(ratios) != chunks:
        raise BadInput(f"{what} has {len(ratios)} values but chunks is {chunks}: give one ratio per chunk")
    if not ratios or any(not math.isfinite(r) or r <= 0 for r in ratios):
        raise BadInput(f"{what} {ratios} must be positive numbers: e.g. 0.6,0.4")
    if abs(sum(ratios) - 1.0) > RATIO_SUM_TOL:
        raise BadInput(f"{what} {ratios} sum to {sum(ratios):.4g}, not 1: make them add up to 1")
    return ratios


def chunk_bounds(seq_len: int, ratios: list[float], align: int) -> list[int]:
    """Boundaries [0, b_1, ..., S] for `ratios`, inner ones on multiples of `align`."""
    if seq_len < 1:
        raise BadInput(f"sequence length {seq_len} must be at least 1")
    if align < 1:
        raise BadInput(f"alignment {align} must be at least 1")
    k = len(ratios)
    if k == 1:
        return [0, seq_len]
    bounds = [0]
    acc = 0.0
    for r in ratios[:-1]:
        acc += r
        bounds.append(int(round(acc * seq_len / align)) * align)
    bounds.append(seq_len)
    sizes = [b - a for a, b in pairwise(bounds)]
    if min(sizes) < align:
        raise BadInput(
            f"{k} chunks of a {seq_len}-token prompt give chunk sizes {sizes}, one below the "
            f"{align}-token alignment: use at most {max(1, seq_len // align)} chunks, other "
            "ratios, or a smaller --align"
        )
    return bounds


def chunk_sizes(bounds: list[int]) -> list[int]:
    return [b - a for a, b in pairwise(bounds)]


def ratios_of(bounds: list[int]) -> list[float]:
    """The split ratios of boundaries [0, ..., S], to 6 places."""
    s = bounds[-1]
    return [round((b - a) / s, 6) for a, b in pairwise(bounds)]


def split_text(ratios: list[float]) -> str:
    """A split as every table and sentence says it: 'no split' for one chunk, else '0.39/0.61'."""
    return "no split" if len(ratios) == 1 else "/".join(f"{r:.2f}" for r in ratios)


def split_cell(ratios: list[float], per_line: int = 3) -> str:
    """split_text for a table cell: `per_line` ratios a line, the next line starting '/', so a
    narrow column folds a long split between ratios, never inside one."""
    if len(ratios) == 1:
        return split_text(ratios)
    parts = [f"{r:.2f}" for r in ratios]
    return "\n/".join("/".join(parts[i : i + per_line]) for i in range(0, len(parts), per_line))
