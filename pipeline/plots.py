"""Every figure the pipeline draws, and the helpers they share: the report's (noise matrices, accuracy
against noise, whether cleaning helps) and the review's gallery. Each takes plain rows and arrays; what
they mean is the report's and the review's."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from pipeline import files

COLUMNS = 8  # tiles per gallery row
TILE_IN, CAPTION_IN, HEADER_IN, DPI = 1.3, 0.42, 0.45, 100  # inches: a tile's image, its caption, the title


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on a cluster node)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes, then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def save(fig, path: Path) -> None:
    """``fig`` as a PNG artifact at ``path`` (atomic), then closed."""
    files.save(path, png(fig))


def placeholder(text: str, path: Path) -> None:
    """A plot that says why it is empty: still written, so no plot of earlier results is left beside the table."""
    fig, ax = pyplot().subplots(figsize=(6, 2.5))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.axis("off")
    save(fig, path)


def noise_matrices(matrices: dict[str, tuple[np.ndarray, float]], path: Path) -> None:
    """``noise_matrices.png``: a heat map per condition of its (K, K) noise matrix P(noisy=i | true=j),
    ``matrices``: ``{condition: (matrix, actual noise rate)}``."""
    plt = pyplot()
    if not matrices:
        return placeholder("No condition with current labels (make noise)", path)
    ncol = min(4, len(matrices))
    nrow = -(-len(matrices) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol + 1, 3.4 * nrow + 0.5), squeeze=False)
    for ax, (cond, (nm, rate)) in zip(axes.flat, matrices.items()):
        im = ax.imshow(nm, vmin=0, vmax=1, cmap="Blues")
        for (i, j), v in np.ndenumerate(nm):
            if round(100 * v) >= 1:
                ax.text(
                    j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6, color="white" if v > 0.6 else "black"
                )
        ax.set_title(f"{cond} ({100 * rate:.1f}% noisy)", fontsize=10)
        ax.set_xlabel("true label j", fontsize=8)
        ax.set_ylabel("noisy label i", fontsize=8)
        ax.set_xticks(range(len(nm)))
        ax.set_yticks(range(len(nm)))
        ax.tick_params(labelsize=6)
    for ax in axes.flat[len(matrices) :]:
        ax.axis("off")
    fig.subplots_adjust(
        left=0.5 / fig.get_figwidth(),
        right=0.88,
        bottom=0.6 / fig.get_figheight(),
        top=1 - 0.7 / fig.get_figheight(),
        wspace=0.35,
        hspace=0.45,
    )
    fig.colorbar(im, cax=fig.add_axes((0.91, 0.25, 0.015, 0.5)), label="P(noisy = i | true = j)")
    fig.suptitle("Noise matrices (%, as realised in the labels)")
    save(fig, path)


def accuracy_vs_noise(
    acc: list[dict], panels: dict[tuple[str, str], str], published: dict[tuple, list], path: Path
) -> None:
    """``accuracy_vs_noise.png``: one panel per (rows, learner) of ``panels`` (its title), test accuracy against
    actual noise rate, a line per sparsity: ours (``acc``, the report's accuracy rows) at the final epoch (± std)
    and best epoch, and the paper's cells, ``published[rows, learner, sparsity]``: [(noise %, accuracy %)]."""
    plt = pyplot()
    methods = list(panels)
    if not methods:
        return placeholder("No coteach results for these conditions and seeds yet (make coteach)", path)
    sparsities = sorted({r["sparsity"] for r in acc}, key=lambda s: (s is None, s))
    colours = dict(zip(sparsities, plt.cm.viridis(np.linspace(0, 0.85, max(len(sparsities), 1)))))
    ncol = min(4, len(methods))
    fig, axes = plt.subplots(
        -(-len(methods) // ncol), ncol, figsize=(4 * ncol, 3.4 * -(-len(methods) // ncol)), squeeze=False, sharey=True
    )
    for ax, m in zip(axes.flat, methods):
        for s in sparsities:
            rs = sorted(
                (r for r in acc if (r["rows"], r["learner"]) == m and r["sparsity"] == s), key=lambda r: r["noise_rate"]
            )
            x = [100 * r["noise_rate"] for r in rs]
            ax.errorbar(
                x,
                [100 * r["final_acc_mean"] for r in rs],
                [100 * (r["final_acc_std"] or 0) for r in rs],
                color=colours[s],
                marker="o",
                capsize=3,
                label=f"sparsity {s}, ours final",
            )
            ax.plot(
                x,
                [100 * r["best_acc_mean"] for r in rs],
                color=colours[s],
                ls=":",
                marker=".",
                label=f"sparsity {s}, ours best",
            )
            pub = sorted(published.get((*m, s), []))
            if pub:
                ax.plot(*zip(*pub), color=colours[s], ls="--", marker="s", mfc="none", label=f"sparsity {s}, paper")
        ax.set_title(panels[m], fontsize=10)
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
    for i, ax in enumerate(axes.flat):
        if i >= len(methods):
            ax.axis("off")
        elif i + ncol >= len(methods):
            ax.set_xlabel("actual noise rate (%)")
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)")
    legend = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(
        "Test accuracy vs noise. Ours: final epoch (solid, ± std over seeds), best epoch (dotted);\n"
        "the CL paper's CIFAR-10 Table 2 (dashed)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.04 + 0.02 * len(sparsities), 1, 0.95))
    save(fig, path)


def cleaning_helps(rows: list[dict], path: Path) -> None:
    """``cleaning_helps.png``: per comparison (``paired.paired_difference`` rows), each seed's difference (dots),
    the mean and its 95% interval."""
    if not rows:
        return placeholder(
            "No (mask, learner) with the same learner on all rows for the same seeds yet "
            "(make coteach LEARNERS=plain SEEDS=0,1,2,3,4)",
            path,
        )
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    for y, r in enumerate(rows):
        d = 100 * np.array(r["differences"])
        ax.scatter(d, np.full(len(d), y), s=14, color="grey", zorder=2)
        if r["ci_low"] is not None:
            ax.plot([100 * r["ci_low"], 100 * r["ci_high"]], [y, y], color="black", lw=2, zorder=3)
        colour = {"helps": "tab:green", "hurts": "tab:red"}.get(r["verdict"], "tab:blue")
        ax.scatter([100 * r["mean"]], [y], s=40, color=colour, zorder=4, marker="D")
    ax.axvline(0, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), [f"{r['condition']}: {r['name']}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy, cleaned rows - all rows (points), same learner, same seed")
    ax.set_title(
        "Does cleaning help? Per-seed paired differences; diamond = mean, bar = 95% paired-t interval", fontsize=9
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save(fig, path)


def gallery_size(tiles: int) -> tuple[int, int]:
    """The gallery PNG's (width, height) in pixels for ``tiles`` tiles."""
    rows = max(1, -(-tiles // COLUMNS))
    return round(COLUMNS * TILE_IN * DPI), round((HEADER_IN + rows * (TILE_IN + CAPTION_IN)) * DPI)


def gallery(images: np.ndarray, captions: list[str], title: str) -> bytes:
    """A PNG grid of ``images`` (N, H, W, C uint8) with a caption under each; size: ``gallery_size``."""
    plt = pyplot()
    width, height = gallery_size(len(images))
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.text(0.5, 1 - HEADER_IN / 2 / (height / DPI), title, ha="center", va="center", fontsize=10)
    cell_w, cell_h = 1 / COLUMNS, (TILE_IN + CAPTION_IN) * DPI / height
    for k, (image, caption) in enumerate(zip(images, captions)):
        r, c = divmod(k, COLUMNS)
        top = 1 - HEADER_IN * DPI / height - r * cell_h
        ax = fig.add_axes(
            (
                c * cell_w + 0.06 * cell_w,
                top - TILE_IN * DPI / height * 0.94,
                0.88 * cell_w,
                TILE_IN * DPI / height * 0.88,
            )
        )
        ax.imshow(
            image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255, interpolation="nearest"
        )
        ax.set_xticks([])
        ax.set_yticks([])
        fig.text(
            c * cell_w + cell_w / 2,
            top - (TILE_IN + CAPTION_IN / 2) * DPI / height,
            caption,
            ha="center",
            va="center",
            fontsize=7.5,
        )
    return png(fig, DPI)
