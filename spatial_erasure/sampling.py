"""Seeded image generation: one torch.Generator per image, so image i depends only on its own seed."""
import numpy as np
import torch
from tqdm import tqdm

TOY_STEPS, TOY_GUIDANCE = 20, 5.0   # the toy model's sampling defaults (DDIM), measured in its README
REAL_STEPS, REAL_GUIDANCE = 50, 7.5  # Stable Diffusion's usual settings (the reference ESD evaluation's)


def sampling_defaults(toy, steps=None, guidance=None):
    """(steps, guidance): the given values, else the toy model's or real SD's defaults."""
    return (steps or (TOY_STEPS if toy else REAL_STEPS)), (guidance or (TOY_GUIDANCE if toy else REAL_GUIDANCE))


@torch.no_grad()
def generate(pipe, prompts, seeds, num_inference_steps=TOY_STEPS, guidance_scale=TOY_GUIDANCE, batch_size=32,
             desc=None, **kwargs):
    """uint8 images (N, H, W, 3) for prompts[i] with seed seeds[i]; batches share nothing but compute."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    out = []
    starts = range(0, len(prompts), batch_size)
    for i in tqdm(starts, desc=desc, disable=desc is None or len(starts) < 2):
        p, s = list(prompts[i:i + batch_size]), list(seeds[i:i + batch_size])
        gens = [torch.Generator(pipe.device).manual_seed(int(x)) for x in s]
        images = pipe(p, generator=gens, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                      output_type="np", **kwargs).images
        out.append((np.clip(images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)
