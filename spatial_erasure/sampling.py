"""Seeded image generation: one torch.Generator per image, so image i depends only on its own seed
(and, to float rounding, on the batch it is in). Split across processes under `accelerate launch`."""
import numpy as np
import torch

from .distributed import map_batches

TOY_STEPS, TOY_GUIDANCE = 20, 5.0   # the toy model's sampling defaults (DDIM), measured in its README
REAL_STEPS, REAL_GUIDANCE = 50, 7.5  # Stable Diffusion's usual settings (the reference ESD evaluation's)


def sampling_defaults(toy, steps=None, guidance=None):
    """(steps, guidance): the given values, else the toy model's or real SD's defaults."""
    return (steps or (TOY_STEPS if toy else REAL_STEPS)), (guidance or (TOY_GUIDANCE if toy else REAL_GUIDANCE))


@torch.no_grad()
def generate(pipe, prompts, seeds, num_inference_steps=TOY_STEPS, guidance_scale=TOY_GUIDANCE, batch_size=32,
             desc=None, **kwargs):
    """uint8 images (N, H, W, 3) for prompts[i] with seed seeds[i]; batches share nothing but compute.
    Under `accelerate launch` each process draws a share of the batches and every process gets all N."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")

    def batch(sl):
        gens = [torch.Generator(pipe.device).manual_seed(int(x)) for x in seeds[sl]]
        images = pipe(list(prompts[sl]), generator=gens, num_inference_steps=num_inference_steps,
                      guidance_scale=guidance_scale, output_type="np", **kwargs).images
        return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    return map_batches(batch, len(prompts), batch_size, desc)
