"""The toy world's judge: a small CNN with a style head and a subject head.

It plays the role UnlearnCanvas's style classifier plays for real SD: evaluations ask it whether
the Van Gogh texture is present in an image, or inside a masked region (a crop resized to 64x64;
it is trained with crop augmentation for exactly that). Trained on procedural images only, never
on the toy model's outputs.

    python -m spatial_erasure.toyart.classifier --output models/toyart-classifier --steps 2000
"""
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm import tqdm

from .. import cli
from ..checkpoint import atomic_save
from ..masks import crop_regions
from ..reports import write_json
from .painter import render_batch
from .world import RES, STYLES, SUBJECTS


class ToyArtClassifier(nn.Module):
    """(B, 3, 64, 64) in [-1, 1] -> style logits (B, 9), subject logits (B, 6)."""

    def __init__(self, width=32, n_styles=len(STYLES), n_subjects=len(SUBJECTS)):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        w = width
        self.features = nn.Sequential(*block(3, w), *block(w, w), nn.MaxPool2d(2),          # 32x32
                                      *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),  # 16x16
                                      *block(2 * w, 4 * w), *block(4 * w, 4 * w), nn.MaxPool2d(2),  # 8x8
                                      *block(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.style_head = nn.Linear(4 * w, n_styles)
        self.subject_head = nn.Linear(4 * w, n_subjects)

    def forward(self, x, return_features=False):
        f = self.features(x)
        out = (self.style_head(f), self.subject_head(f))
        return out + (f,) if return_features else out


def to_tensor(images):
    """uint8 (B, H, W, 3) numpy or PIL list -> float (B, 3, H, W) in [-1, 1]."""
    if isinstance(images, list):
        images = np.stack([np.asarray(im.convert("RGB")) for im in images])
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


def resize(x, size=RES):
    """Resize a batch to size x size (bilinear, antialiased when shrinking): how regions are judged."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def grid_cells(x, grid=3):
    """(B, 3, H, W) -> (B * grid^2, 3, RES, RES): each grid cell cropped and resized, row-major."""
    H, W = x.shape[-2:]
    ys, xs = np.linspace(0, H, grid + 1).round().astype(int), np.linspace(0, W, grid + 1).round().astype(int)
    cells = [x[:, :, ys[i]:ys[i + 1], xs[j]:xs[j + 1]] for i in range(grid) for j in range(grid)]
    return torch.stack([resize(c) for c in cells], 1).flatten(0, 1)


def random_crops(x, rng, min_side=18, max_side=48):
    """Crop augmentation: a random square of side min..max px from each image, resized to 64."""
    out = []
    for img in x:
        s = int(rng.integers(min_side, max_side + 1))
        i, j = rng.integers(0, RES - s + 1, 2)
        out.append(resize(img[None, :, i:i + s, j:j + s])[0])
    return torch.stack(out)


def augment(x, rng):
    """Ordinary augmentations: flips, exposure, light blur or noise (photometric only, no style hints)."""
    if rng.random() < 0.5:
        x = x.flip(-1)
    b = x.shape[0]
    x = x * torch.empty(b, 1, 1, 1).uniform_(0.9, 1.1) + torch.empty(b, 3, 1, 1).uniform_(-0.05, 0.05)
    if rng.random() < 0.25:
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)
    if rng.random() < 0.25:
        x = x + 0.03 * torch.randn_like(x)
    return x.clamp(-1, 1)


def load_classifier(folder, device="cpu"):
    """Load the bundled classifier (safetensors + config.json) in eval mode."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    model = ToyArtClassifier(cfg["width"], len(cfg["styles"]), len(cfg["subjects"]))
    model.load_state_dict(load_file(os.path.join(folder, "model.safetensors")))
    model.styles, model.subjects = cfg["styles"], cfg["subjects"]
    return model.to(device).eval()


@torch.no_grad()
def predict(model, x, batch=256):
    """Softmax probabilities (style (B, 9), subject (B, 6)) and features (B, 128) for x in [-1, 1]."""
    outs = [model(x[i:i + batch], return_features=True) for i in range(0, len(x), batch)]
    st, su, f = (torch.cat(o) for o in zip(*outs))
    return st.softmax(-1), su.softmax(-1), f


def region_style(model, x, masks):
    """The classifier's style (index into STYLES) of each masked region: x (N, 3, H, W) in [-1, 1],
    masks (N, H, W) bool; the region is its bounding box, resized to the classifier's input."""
    return predict(model, crop_regions(x, masks, RES))[0].argmax(1).numpy()


def region_features(model, x, masks):
    """The classifier's features (N, 128) of each masked region, cropped as region_style crops it."""
    return predict(model, crop_regions(x, masks, RES))[2].numpy()


def evaluate(model, n=900, seed=10_000):
    """Held-out accuracies: full-image style and subject, and style of each of the 9 grid cells."""
    images, _, st, su = render_batch(n, seed)
    x = to_tensor(images)
    ps, pu, _ = predict(model, x)
    pc, _, _ = predict(model, grid_cells(x))
    cell_style = torch.as_tensor(st).repeat_interleave(9)
    return {"style_acc": (ps.argmax(1).numpy() == st).mean().item(),
            "subject_acc": (pu.argmax(1).numpy() == su).mean().item(),
            "cell_style_acc": (pc.argmax(1) == cell_style).float().mean().item(), "n_images": n}


def main(argv=None):
    p = cli.parser(__doc__)
    cli.add_output_arg(p, "models/toyart-classifier", "output folder")
    p.add_argument("--steps", type=int, default=2000, help="training steps")
    p.add_argument("--batch_size", type=int, default=64, help="images per step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--crop_fraction", type=float, default=0.5, help="share of each batch cropped and resized")
    p.add_argument("--width", type=int, default=16, help="channels of the first conv layer")
    cli.add_seed_arg(p, 0, "seed for weights and training images")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = ToyArtClassifier(args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.05)
    start = time.time()
    bar = tqdm(range(args.steps), desc="classifier")
    for step in bar:
        images, _, st, su = render_batch(args.batch_size, seed=args.seed * 1_000_003 + step + 1)
        x, st, su = to_tensor(images), torch.as_tensor(st), torch.as_tensor(su)
        k = int(args.batch_size * args.crop_fraction)    # the first k become crops: style loss only
        x = torch.cat([random_crops(x[:k], rng), x[k:]])
        style_logits, subject_logits = model(augment(x, rng))
        loss = F.cross_entropy(style_logits, st) + F.cross_entropy(subject_logits[k:], su[k:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    metrics = evaluate(model)
    metrics.update(train_seconds=round(time.time() - start, 1), args=vars(args))
    print(json.dumps(metrics, indent=1))
    os.makedirs(args.output, exist_ok=True)
    atomic_save(model.state_dict(), os.path.join(args.output, "model.safetensors"))
    write_json(os.path.join(args.output, "config.json"), {"width": args.width, "styles": STYLES, "subjects": SUBJECTS,
                                                       "resolution": RES, "heldout_metrics": metrics})


if __name__ == "__main__":
    main()
