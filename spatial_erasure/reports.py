"""Figures and tables: labelled image grids, JSON and markdown written atomically."""
import json
import textwrap

from PIL import Image
from matplotlib.figure import Figure  # pyplot-free: no global backend switch (notebooks keep inline plots)

from .files import atomic_path


def atomic_write_text(path, text):
    """Write text to path via a unique temporary name, so a crash never leaves half a file."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


def save_png(image, path):
    """Save a uint8 (H, W, 3) array as PNG atomically."""
    with atomic_path(path, ".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def save_figure(fig, path, dpi=120):
    """Save a matplotlib Figure as PNG atomically. Build figures with `Figure(...)`, not pyplot."""
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")


def image_grid(images, path, row_labels=None, col_labels=None, captions=None, title=None, cell=1.1):
    """images: nested list [row][col] of uint8 (H, W, 3) arrays (None for empty); labelled PNG grid."""
    rows, cols = len(images), max(len(r) for r in images)
    fig = Figure(figsize=(cell * cols + 1.2, cell * rows + 0.6), layout="constrained")  # no gap under the title
    axes = fig.subplots(rows, cols, squeeze=False)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(images[i]) and images[i][j] is not None:
                ax.imshow(images[i][j], interpolation="nearest")
            if captions and captions[i][j]:
                ax.set_xlabel(captions[i][j], fontsize=6)
            if row_labels and j == 0:
                ax.set_ylabel(row_labels[i], fontsize=7, rotation=0, ha="right", va="center")
            if col_labels and i == 0:
                ax.set_title(textwrap.fill(col_labels[j], 18), fontsize=7)   # long model names wrap
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def markdown_table(rows, columns):
    """rows: list of dicts; a GitHub markdown table with the given column order."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "n/a" if v is None else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def loss_curve(losses, path, title=None, window=25):
    """Per-iteration loss (light) and its running mean (dark), log scale, as a PNG."""
    import numpy as np
    fig = Figure(figsize=(5, 3))
    ax = fig.subplots()
    x = np.arange(1, len(losses) + 1)
    ax.plot(x, losses, color="0.75", lw=0.8, label="loss")
    if len(losses) >= window:
        ax.plot(x[window - 1:], np.convolve(losses, np.ones(window) / window, "valid"), color="C0",
                label=f"mean of {window}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=8)
    save_figure(fig, path)
