"""Spatial masks: the G x G grid plus a centre square (the paper's 10 masks at G=3), held-out
shapes (rectangles, circles, strokes), user mask images, their latent-size versions, and the
bounding-box crops a region classifier judges.

Masks are float tensors (M, 1, H, W) with 1 = inside (the region to erase / inpaint).
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import InputError


def _edges(n, grid):
    return np.linspace(0, n, grid + 1).round().astype(int)


def grid_masks(size, grid=3, center=True):
    """G*G cells (row-major; they tile the image, each pixel in exactly one) plus, when center, a
    centred square of half the side: (G*G [+1], 1, size, size)."""
    if grid < 1 or size < grid:
        raise InputError(f"grid {grid} does not fit an image of {size} px; use 1 <= grid <= size")
    e = _edges(size, grid)
    masks = []
    for i in range(grid):
        for j in range(grid):
            m = torch.zeros(1, size, size)
            m[:, e[i]:e[i + 1], e[j]:e[j + 1]] = 1
            masks.append(m)
    if center:
        masks.append(rectangle(size, size // 4, size // 4, size - size // 4, size - size // 4)[0])
    return torch.stack(masks)


def mask_names(grid=3, center=True):
    return [f"cell{i}{j}" for i in range(grid) for j in range(grid)] + (["center"] if center else [])


def rectangle(size, x0, y0, x1, y1):
    """(1, 1, size, size) with ones in columns x0:x1 and rows y0:y1 (pixels)."""
    m = torch.zeros(1, 1, size, size)
    m[..., y0:y1, x0:x1] = 1
    return m


def circle(size, cx, cy, r):
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2) <= r * r).float()[None, None]


def stroke(size, points, width):
    """A free-form brush stroke through `points` [(x, y), ...] of the given width (pixels)."""
    y, x = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    m = torch.zeros(size, size, dtype=torch.bool)
    for (ax, ay), (bx, by) in zip(points, points[1:]):
        dx, dy = bx - ax, by - ay
        t = (((x - ax) * dx + (y - ay) * dy) / max(dx * dx + dy * dy, 1e-9)).clamp(0, 1)
        m |= (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2 <= (width / 2) ** 2
    return m.float()[None, None]


def heldout_masks(size, seed=0):
    """Non-grid masks for spatial evaluation: two random rectangles, a circle, a stroke."""
    rng = np.random.default_rng(seed)
    out, names = [], []
    for k in range(2):
        w, h = (rng.uniform(0.25, 0.45, 2) * size).astype(int)
        x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
        out.append(rectangle(size, x0, y0, x0 + w, y0 + h))
        names.append(f"rect{k}")
    out.append(circle(size, size * 0.55, size * 0.45, size * 0.22))
    names.append("circle")
    pts = [(size * 0.15, size * 0.7), (size * 0.4, size * 0.35), (size * 0.65, size * 0.6), (size * 0.85, size * 0.25)]
    out.append(stroke(size, pts, size * 0.14))
    names.append("stroke")
    return torch.cat(out), names


def read_mask(path, size):
    """A user mask image (white = inside) resized to size x size and binarised at 50%."""
    try:
        img = Image.open(path).convert("L").resize((size, size), Image.BILINEAR)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read mask image {path}: {e}; pass a PNG/JPEG where white marks the region") from e
    m = torch.as_tensor(np.asarray(img) > 127).float()[None, None]
    if m.sum() == 0:
        raise InputError(f"mask image {path} has no white pixels; white (>127) marks the region to use")
    return m


def to_latent(mask, latent_size):
    """Pixel masks (M, 1, H, W) -> latent masks (M, 1, h, w): a latent pixel is inside when at least
    half of the pixels it covers are."""
    return (F.interpolate(mask, size=(latent_size, latent_size), mode="area") >= 0.5).float()


def parse_mask(spec, size, grid=3):
    """A mask from the command line, (1, 1, size, size): a grid cell number 0..G*G-1 or 'center'
    (the training masks), 'rect:x0,y0,x1,y1' in pixels, or a mask image path (white = inside)."""
    names = mask_names(grid, True)
    if spec == "center" or spec.isdigit():
        k = len(names) - 1 if spec == "center" else int(spec)
        if k >= len(names) - 1 and spec != "center":
            raise InputError(f"grid cell {k} does not exist; use 0..{grid * grid - 1} (row-major) or 'center'")
        return grid_masks(size, grid, True)[k:k + 1]
    if spec.startswith("rect:"):
        try:
            x0, y0, x1, y1 = (int(v) for v in spec[5:].split(","))
        except ValueError:
            raise InputError(f"bad rectangle {spec!r}; write rect:x0,y0,x1,y1 in pixels, e.g. rect:8,8,40,32") from None
        if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
            raise InputError(f"rectangle {spec!r} is empty or outside the {size}x{size} image; give "
                             f"0 <= x0 < x1 <= {size} and 0 <= y0 < y1 <= {size}")
        return rectangle(size, x0, y0, x1, y1)
    return read_mask(spec, size)


def crop_regions(x, masks, size):
    """(N, 3, H, W) and masks (N, H, W) bool -> (N, 3, size, size): each mask's bounding box, outside
    pixels of the box kept (the classifier judges the region as a picture), resized."""
    out = []
    for img, m in zip(x, masks):
        ys, xs = np.nonzero(m)
        box = img[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1][None]
        out.append(F.interpolate(box, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out)


def main(argv=None):
    """Draw the training masks and the held-out evaluation masks as one PNG."""
    from . import cli
    from .reports import image_grid
    p = cli.parser(main.__doc__ + "\n\n    python -m spatial_erasure.masks --output results/masks.png")
    p.add_argument("--size", type=int, default=64, help="image size in pixels")
    p.add_argument("--grid", type=int, default=3, help="G of the G x G grid")
    cli.add_output_arg(p, "results/masks.png", "PNG to write")
    args = p.parse_args(argv)
    train, held = grid_masks(args.size, args.grid), heldout_masks(args.size)
    inside, outside = np.array([250, 200, 40], np.uint8), np.array([50, 50, 60], np.uint8)
    to_rgb = lambda m: np.where(m[0].numpy()[..., None] > 0.5, inside, outside)  # noqa: E731
    names = mask_names(args.grid) + held[1]
    cells = [to_rgb(m) for m in train] + [to_rgb(m) for m in held[0]]
    cols = len(train)
    image_grid([cells[:cols], cells[cols:]], args.output, captions=[names[:cols], names[cols:] + [""] * (2 * cols)],
               row_labels=["training", "held-out"], title=f"{len(train)} training masks (yellow = erase) and "
               f"{len(held[0])} held-out masks, {args.size} px")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
