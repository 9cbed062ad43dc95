import pytest

from isotune.core.chunking import chunk_bounds, chunk_sizes, parse_ratios
from isotune.core.errors import BadInput


def test_even_and_uneven_bounds_are_aligned():
    assert chunk_bounds(2048, [0.5, 0.5], 64) == [0, 1024, 2048]
    assert chunk_bounds(300, [0.5, 0.3, 0.2], 16) == [0, 144, 240, 300]
    assert chunk_bounds(100, [1.0], 64) == [0, 100]  # one chunk may be shorter than the alignment
    b = chunk_bounds(1000, [0.1, 0.2, 0.3, 0.4], 16)
    assert b[0] == 0 and b[-1] == 1000 and all(x % 16 == 0 for x in b[1:-1])
    assert sum(chunk_sizes(b)) == 1000


def test_chunks_below_alignment_are_refused():
    with pytest.raises(BadInput, match="alignment"):
        chunk_bounds(64, [0.5, 0.5], 64)
    with pytest.raises(BadInput, match="at most 3 chunks"):
        chunk_bounds(100, [0.25] * 4, 32)


@pytest.mark.parametrize(
    "text,chunks,msg",
    [
        ("0.5,x", 2, "does not parse"),
        ("0.5,0.6", 2, "sum to"),
        ("0.5,0.5", 3, "one ratio per chunk"),
        ("1.5,-0.5", 2, "positive"),
        (None, 9, "out of range"),
        (None, 0, "out of range"),
    ],
)
def test_bad_ratios(text, chunks, msg):
    with pytest.raises(BadInput, match=msg):
        parse_ratios(text, chunks)


def test_default_ratios_are_even():
    assert parse_ratios(None, 4) == [0.25] * 4
    assert parse_ratios("0.7, 0.3", 2) == [0.7, 0.3]
