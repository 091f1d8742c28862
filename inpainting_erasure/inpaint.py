"""Inpaint a region of an image with a prompt, with and without an erasure file; pixels outside the
mask are kept exactly (paste-back). Writes the result and a side-by-side comparison.

    python inpainting_erasure/inpaint.py --source_prompt "a realistic photo of a house" --mask 4 \
        --prompt "a picture of a house by Vincent van Gogh" \
        --erasure models/grid-Vincent_van_Gogh-scaled-esd-x.safetensors
    python inpainting_erasure/inpaint.py --image photo.png --mask mask.png --prompt "..." \
        --base_model runwayml/stable-diffusion-inpainting --num_inference_steps 50 --guidance_scale 7.5

--mask: a grid cell 0..8 (row-major) or 'center', 'rect:x0,y0,x1,y1' (pixels), or a mask image
(white = repaint). A 4-channel model inpaints by blending; a 9-channel one gets the mask as input.
"""
import os
import sys

import numpy as np
from PIL import Image

from spatial_erasure import cli
from spatial_erasure.distributed import process_device
from spatial_erasure.erasure_file import apply_erasure, read_erasure
from spatial_erasure.errors import InputError
from spatial_erasure.masks import parse_mask
from spatial_erasure.models import describe, load_pipeline
from spatial_erasure.reports import image_grid
from spatial_erasure.sampling import full_mask_generate, inpaint


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="image to inpaint (resized to the model's size)")
    src.add_argument("--source_prompt", help="generate the image to inpaint from this prompt instead")
    a("--mask", required=True, help="grid cell 0..8 or 'center', 'rect:x0,y0,x1,y1', or a mask image")
    a("--prompt", required=True, help="what to paint inside the mask")
    a("--erasure", default=None, help="erasure .safetensors file: also inpaint with it, side by side")
    cli.add_common_args(p, "results/inpaint", "output folder", seed=0,
                        seed_help="seed of the inpainting (and of --source_prompt)")
    return p.parse_args(argv)


@cli.reports_errors
def main(args):
    if args.erasure:
        read_erasure(args.erasure)                 # a bad file fails now, in one line, not after loading
    pipe = load_pipeline(args.base_model, task="inpaint", device=process_device(args.device))
    print(describe(pipe))
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    kw = dict(num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale)
    mask = parse_mask(args.mask, size)[0, 0].numpy()
    if args.image:
        try:
            image = np.asarray(Image.open(args.image).convert("RGB").resize((size, size), Image.BICUBIC))[None]
        except OSError as e:
            raise InputError(f"cannot read --image {args.image}: {e}; pass a PNG or JPEG") from e
    else:
        image = full_mask_generate(pipe, [args.source_prompt], [args.seed], size, **kw)
    rows, names = [[image[0], (np.repeat(mask[..., None], 3, 2) * 255).astype(np.uint8)]], ["source", "mask"]
    _, base = inpaint(pipe, image, mask[None], [args.prompt], [args.seed], **kw)
    rows[0].append(base[0])
    names.append("base")
    result = base
    if args.erasure:
        meta = apply_erasure(pipe, args.erasure)
        _, result = inpaint(pipe, image, mask[None], [args.prompt], [args.seed], **kw)
        rows[0].append(result[0])
        names.append(f"erased ({meta.get('method')}, {meta.get('algorithm', 'esd')})")
    outside = ~(mask > 0.5)
    assert (result[0][outside] == image[0][outside]).all()       # paste-back: outside pixels are the source's
    os.makedirs(args.output, exist_ok=True)
    Image.fromarray(result[0]).save(os.path.join(args.output, "inpainted.png.tmp"), format="PNG")
    os.replace(os.path.join(args.output, "inpainted.png.tmp"), os.path.join(args.output, "inpainted.png"))
    image_grid(rows, os.path.join(args.output, "before_after.png"), col_labels=names, cell=1.6,
               title=f"{args.prompt!r} in mask {args.mask}")
    print(f"wrote {args.output}/inpainted.png and before_after.png (outside the mask: source pixels exactly)")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
