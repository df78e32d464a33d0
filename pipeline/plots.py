"""Figure helpers every plot shares (the report's, the paired comparison's, the review gallery's)."""

from __future__ import annotations

import io
from pathlib import Path

from pipeline import store


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on a cluster node)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    """``fig`` as a PNG artifact at ``path`` (atomic), then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    pyplot().close(fig)
    store.save(path, buf.getvalue())


def placeholder(text: str, path: Path) -> None:
    """A plot that says why it is empty: still written, so no plot of earlier results is left beside the table."""
    fig, ax = pyplot().subplots(figsize=(6, 2.5))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.axis("off")
    save(fig, path)
