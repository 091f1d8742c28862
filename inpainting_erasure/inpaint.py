r"""Inpaint regions of an image with a prompt, with and without an erasure file; pixels outside each
mask are kept exactly (paste-back). Writes the results and a comparison figure, one column per mask:
the base model on the prompt, the base model on its neutral twin (the prompt without the erased
concept: the picture an erasure should leave), and the erased model on the prompt.

    python inpainting_erasure/inpaint.py --base_model models/toyart-sd-inpainting \
        --source_prompt "a realistic photo of a house" --mask 0 1 3 center \
        --prompt "a picture of a house by Vincent van Gogh" \
        --erasure models/grid-Vincent_van_Gogh-scaled-esd-x-inpainting.safetensors
    python inpainting_erasure/inpaint.py --image photo.png --mask mask.png --prompt "..." \
        --base_model stable-diffusion-v1-5/stable-diffusion-inpainting --num_inference_steps 50 --guidance_scale 7.5

--mask: grid cells 0..8 (row-major), 'center', 'rect:x0,y0,x1,y1' (pixels), or mask images (white =
repaint). A 4-channel model inpaints by blending; a 9-channel one gets the mask as input. On the
toy model the bundled classifier names the style painted in each region (the figure's captions).
"""
import os
import sys
import textwrap

import numpy as np
from PIL import Image

from spatial_erasure import cli
from spatial_erasure.distributed import process_device
from spatial_erasure.erasure_file import apply_erasure, read_erasure
from spatial_erasure.errors import InputError
from spatial_erasure.masks import parse_mask
from spatial_erasure.models import TOY_CLASSIFIER, describe, load_pipeline
from spatial_erasure.prompts import is_toy, neutral_twin
from spatial_erasure.reports import image_grid, save_png
from spatial_erasure.sampling import full_mask_generate, inpaint
from spatial_erasure.toyart.classifier import load_classifier, region_style, to_tensor
from spatial_erasure.toyart.world import STYLES


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="image to inpaint (resized to the model's size)")
    src.add_argument("--source_prompt", help="generate the image to inpaint from this prompt instead")
    a("--mask", required=True, nargs="+", help="grid cells 0..8, 'center', 'rect:x0,y0,x1,y1' or mask images; one "
                                              "row of the figure each")
    a("--prompt", required=True, help="what to paint inside the mask")
    a("--erasure", default=None, help="erasure .safetensors file: also inpaint with it, side by side")
    a("--allow_unverified", action="store_true",
      help="apply an erasure file that records no base_fingerprint (nothing says which model it was trained on)")
    a("--twin", default=None, help="the neutral twin prompt: the base model paints it in a row above the erased one, "
      "the picture the erasure should leave (default with --erasure: --prompt without the erased concept)")
    cli.add_common_args(p, "results/inpaint", "output folder", seed=0,
                        seed_help="seed of the inpainting (and of --source_prompt)")
    return p.parse_args(argv)


def region_judge(pipe):
    """On the toy model: the bundled classifier's style name of each masked region; elsewhere None."""
    if not is_toy(pipe):
        return None
    clf = load_classifier(TOY_CLASSIFIER)
    return lambda images, masks: [STYLES[i] for i in region_style(clf, to_tensor(images), masks > 0.5)]


def twin_prompt(prompt, meta):
    """`prompt` without every concept the erasure file names (the one its metadata records, or several)."""
    for concept in meta.get("concepts") or [meta.get("concept", "")]:
        if concept and concept.lower() in prompt.lower():
            prompt = neutral_twin(prompt, concept)
    return prompt


@cli.reports_errors
def main(args):
    twin = args.twin
    if args.erasure:
        meta = read_erasure(args.erasure)[1]       # a bad file fails now, in one line, not after loading
        twin = twin or twin_prompt(args.prompt, meta)
    pipe = load_pipeline(args.base_model, task="inpaint", device=process_device(args.device))
    print(describe(pipe))
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    kw = dict(num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale)
    masks = np.stack([parse_mask(m, size)[0, 0].numpy() for m in args.mask])          # (M, H, W)
    if args.image:
        try:
            image = np.asarray(Image.open(args.image).convert("RGB").resize((size, size), Image.BICUBIC))[None]
        except OSError as e:
            raise InputError(f"cannot read --image {args.image}: {e}; pass a PNG or JPEG") from e
    else:
        image = full_mask_generate(pipe, [args.source_prompt], [args.seed], size, **kw)
    images, m = np.repeat(image, len(masks), 0), len(masks)
    # the source with the mask darkened, then each model's inpainting of it (the same seed per row)
    columns = {"source (mask dark)": (images * (1 - 0.6 * masks[..., None])).astype(np.uint8),
               "base": inpaint(pipe, images, masks, [args.prompt] * m, [args.seed] * m, **kw)[1]}
    if twin is not None:                           # what the erased row should look like: the base model on the twin
        columns[f"base, twin {twin!r}"] = inpaint(pipe, images, masks, [twin] * m, [args.seed] * m, **kw)[1]
    if args.erasure:
        meta = apply_erasure(pipe, args.erasure, allow_unverified=args.allow_unverified)
        columns[f"erased ({meta.get('method')}, {meta.get('algorithm', 'esd')})"] = \
            inpaint(pipe, images, masks, [args.prompt] * m, [args.seed] * m, **kw)[1]
    result = list(columns.values())[-1]
    outside = masks[..., None].repeat(3, -1) < 0.5
    assert (result[outside] == images[outside]).all()            # paste-back: outside pixels are the source's
    judge = region_judge(pipe)
    captions = None
    if judge is not None:
        captions = [[""] * m] + [judge(col, masks) for col in list(columns.values())[1:]]
        for name, got in zip(list(columns)[1:], captions[1:]):
            print(f"{name}: the classifier sees " + ", ".join(f"{s} in mask {k}" for s, k in zip(got, args.mask)))
    os.makedirs(args.output, exist_ok=True)
    for i, spec in enumerate(args.mask):
        name = "inpainted.png" if m == 1 else f"inpainted-{os.path.basename(spec).replace(':', '_')}.png"
        save_png(result[i], os.path.join(args.output, name))
    figure = os.path.join(args.output, "before_after.png")
    # a row per model, a column per mask; on the toy model each region's style is its caption
    image_grid([list(col) for col in columns.values()], figure, row_labels=[textwrap.fill(n, 14) for n in columns],
               col_labels=[f"mask {k}" for k in args.mask], captions=captions, cell=1.3, title=repr(args.prompt))
    print(f"figure: {figure} (outside each mask: source pixels exactly)")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
