"""Packed prompts: several sequences in one token stream, as serving engines batch a prefill.
Each sequence attends causally to itself only, its positions counted from its own start (0 for
a new prompt), its K/V in a cache slot of its own. ISO's chunk bounds cut the packed stream: a
bound may fall inside a sequence, whose later part then attends to its own earlier K/V, as in
one prompt. Pure Python: the executor runs these pieces, the cost model prices them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from isotune.core.errors import BadInput


@dataclass(frozen=True)
class Seq:
    """One sequence's rows in a packed forward."""

    slot: int  # its KV cache slot
    start: int  # the position of its first row here (0: a new prompt; later: a decode step)
    tokens: int  # rows it has in the stream


@dataclass(frozen=True)
class Piece:
    """The rows of one sequence that one chunk holds."""

    slot: int
    start: int  # the position of the piece's first row in its sequence
    offset: int  # the piece's first row in the chunk
    tokens: int

    @property
    def end(self) -> int:
        return self.start + self.tokens


def one_sequence(tokens: int, start: int = 0) -> list[Seq]:
    """A prompt alone: the unpacked case."""
    return [Seq(slot=0, start=start, tokens=tokens)]


def packed(total: int, size: int) -> list[Seq]:
    """`total` tokens as new prompts of `size` tokens each (the last one what is left), a slot
    each: the pack bench and search --pack time a length as."""
    return [Seq(slot=i, start=0, tokens=min(size, total - a)) for i, a in enumerate(range(0, total, size))]


def check_pack_size(size: int | None, lens: list[int]) -> int:
    """--pack: the prompt size; the cache slots the longest length's pack needs (1 without)."""
    if size is None:
        return 1
    if size < 1:
        raise BadInput(f"--pack {size}: give the tokens of each packed prompt, at least 1")
    return -(-max(lens) // size)


def check_pack(seqs: list[Seq], slots: int, max_len: int, tokens: int) -> None:
    """Each sequence in a slot of its own that exists, its positions inside the cache, and
    together the `tokens` rows of the stream."""
    if sum(s.tokens for s in seqs) != tokens:
        raise ValueError(f"the pack holds {sum(s.tokens for s in seqs)} tokens, the stream {tokens}")
    used = [s.slot for s in seqs]
    if len(set(used)) != len(used):
        raise BadInput(f"a pack puts two sequences in one cache slot ({sorted(used)}): one slot per sequence")
    for s in seqs:
        if not 0 <= s.slot < slots or s.tokens < 1 or s.start < 0 or s.start + s.tokens > max_len:
            raise BadInput(
                f"sequence in slot {s.slot} at positions {s.start}..{s.start + s.tokens - 1} does not fit "
                f"{slots} slots of {max_len} positions"
            )


def chunk_pieces(seqs: list[Seq], bounds: list[int]) -> list[tuple[Piece, ...]]:
    """Per chunk of `bounds` (over the packed stream, [0, ..., total]) the pieces it holds, in
    stream order."""
    total = sum(s.tokens for s in seqs)
    if bounds[0] != 0 or bounds[-1] != total:
        raise ValueError(f"bounds {bounds} do not cover the {total} packed tokens")
    firsts = [0]
    for s in seqs:
        firsts.append(firsts[-1] + s.tokens)
    out = []
    for a, b in pairwise(bounds):
        mine = []
        for s, lo, hi in zip(seqs, firsts, firsts[1:], strict=False):
            a2, b2 = max(a, lo), min(b, hi)
            if a2 < b2:
                mine.append(Piece(slot=s.slot, start=s.start + a2 - lo, offset=a2 - a, tokens=b2 - a2))
        out.append(tuple(mine))
    return out
