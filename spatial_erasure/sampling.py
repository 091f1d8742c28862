"""Seeded image generation: text-to-image (`generate`) and inpainting with exact paste-back
(`inpaint`). One torch.Generator per image, so image i depends only on its own seed (and, to float
rounding, on the batch it is in). Split across processes under `accelerate launch`.

    images = generate(pipe, prompts, seeds)
    raw, pasted = inpaint(pipe, images, masks, prompts, seeds)

`raw` is what the inpainting model produced everywhere (what it preserves outside the mask on its
own); `pasted` keeps every pixel outside the mask exactly as in `images`.
"""
import numpy as np
import torch
from PIL import Image

from .distributed import map_batches
from .families import family_of
from .prompts import one_note_on_cut_prompts

TOY_STEPS, TOY_GUIDANCE = 20, 5.0   # the toy model's sampling defaults (DDIM), measured in its README
REAL_STEPS, REAL_GUIDANCE = 50, 7.5  # Stable Diffusion's usual settings (the reference ESD evaluation's)


def sampling_defaults(world, steps=None, guidance=None):
    """(steps, guidance): the given values, else the world's defaults (worlds.World: toy model or real SD)."""
    return steps or world.steps, guidance or world.guidance


def to_uint8(images):
    """Pipeline output in [0, 1] (output_type="np") as uint8."""
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


@torch.no_grad()
def generate(pipe, prompts, seeds, num_inference_steps=TOY_STEPS, guidance_scale=TOY_GUIDANCE, batch_size=32,
             desc=None, **kwargs):
    """uint8 images (N, H, W, 3) for prompts[i] with seed seeds[i]; batches share nothing but compute.
    Under `accelerate launch` each process draws a share of the batches and every process gets all N."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
    call = {**family_of(pipe).call_kwargs(pipe), **kwargs}     # e.g. SD3's recorded T5 length

    def batch(sl):
        gens = [torch.Generator(pipe.device).manual_seed(int(x)) for x in seeds[sl]]
        return to_uint8(pipe(list(prompts[sl]), generator=gens, num_inference_steps=num_inference_steps,
                           guidance_scale=guidance_scale, output_type="np", **call).images)
    with one_note_on_cut_prompts(pipe, prompts):
        return map_batches(batch, len(prompts), batch_size, desc)


@torch.no_grad()
def inpaint(pipe, images, masks, prompts, seeds, num_inference_steps=TOY_STEPS, guidance_scale=TOY_GUIDANCE,
            batch_size=32, desc=None):
    """With diffusers' inpainting pipeline (4-channel UNet: blended loop; 9-channel: mask inputs):
    images uint8 (N, H, W, 3); masks (N, 1, H, W) or (N, H, W), 1 = repaint. Returns (raw, pasted) uint8."""
    n = len(images)
    if not (len(masks) == len(prompts) == len(seeds) == n):
        raise ValueError(f"{n} images, {len(masks)} masks, {len(prompts)} prompts, {len(seeds)} seeds: give one each")
    masks = np.asarray(masks).reshape(n, *np.asarray(images).shape[1:3]) > 0.5
    h, w = masks.shape[1:]

    def batch(sl):
        gens = [torch.Generator(pipe.device).manual_seed(int(s)) for s in seeds[sl]]
        return to_uint8(pipe(list(prompts[sl]), image=[Image.fromarray(im) for im in images[sl]],
                           mask_image=[Image.fromarray(m.astype(np.uint8) * 255) for m in masks[sl]], height=h,
                           width=w, generator=gens, num_inference_steps=num_inference_steps,
                           guidance_scale=guidance_scale, strength=1.0, output_type="np").images)
    with one_note_on_cut_prompts(pipe, prompts):
        raw = map_batches(batch, n, batch_size, desc)     # split across processes under `accelerate launch`
    pasted = np.where(masks[..., None], raw, images)
    return raw, pasted


def full_mask_generate(pipe, prompts, seeds, size, **kw):
    """Text-to-image through an inpainting pipeline (whole image masked): works for 4- and 9-channel UNets."""
    n = len(prompts)
    grey = np.full((n, size, size, 3), 127, np.uint8)
    return inpaint(pipe, grey, np.ones((n, size, size)), prompts, seeds, **kw)[0]
