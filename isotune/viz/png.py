"""matplotlib for the PNG outputs: loaded on the file-only Agg backend, or a one-line hint when it
is missing (plots are an extra: `pip install 'isotune[plots]'`), and a figure turned into bytes
that an atomic write can put on disk."""

from __future__ import annotations

import io

from isotune.core.errors import BadInput


def pyplot():
    """matplotlib's pyplot on the Agg backend, or BadInput saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput("plots need matplotlib: pip install 'isotune[plots]' (or pip install matplotlib)") from None
    return plt


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed (pyplot keeps every open one alive)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    return buf.getvalue()
