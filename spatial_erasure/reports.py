"""Figures and tables: labelled image grids, JSON and markdown written atomically."""
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def atomic_write_text(path, text):
    """Write text to path via a temporary name, so a crash never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


def save_figure(fig, path, dpi=120):
    """Save a matplotlib figure as PNG atomically and close it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def image_grid(images, path, row_labels=None, col_labels=None, captions=None, title=None, cell=1.1):
    """images: nested list [row][col] of uint8 (H, W, 3) arrays (None for empty); labelled PNG grid."""
    rows, cols = len(images), max(len(r) for r in images)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 1.2, cell * rows + 0.6), squeeze=False)
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
                ax.set_title(col_labels[j], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def markdown_table(rows, columns):
    """rows: list of dicts; a GitHub markdown table with the given column order."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
