"""Where x_t comes from, and the UNet call every objective uses.

`sample` (faithful ESD): from seeded noise, run the frozen model with classifier-free guidance
for k scheduler steps; costs 2k UNet forwards per iteration (k ~ 25 on average at 50 steps).
`cache`: run `bank_size` full frozen trajectories once, keep x at every step, draw (trajectory,
k) per iteration; the frozen model never changes, so these are the same states `sample` would
visit with the bank's seeds. `noise`: forward-noise the bank's final latents to t with the
scheduler, q(x_t | x_0). The bank's cost (seconds, forwards) is counted and reported.
"""
import time

import torch
from torch.func import functional_call

from .prompts import Cond

XT_SOURCES = {"sample": "run the frozen model k guided steps from seeded noise (faithful; ~2k forwards/iteration)",
              "cache": "draw x_t from a bank of frozen-model trajectories built once (every step kept)",
              "noise": "forward-noise the bank's generated latents to t with the scheduler (q(x_t|x_0))"}


def unet_eps(unet, scheduler, x, t, cond, params=None):
    """Noise prediction at (x, t). Inputs go through scheduler.scale_model_input (Euler divides by
    sqrt(sigma^2 + 1)); `params` ({name: tensor}) overrides weights, e.g. the frozen originals."""
    xin = scheduler.scale_model_input(x, t)
    if params is None:
        return unet(xin, t, **cond.unet_kwargs()).sample
    return functional_call(unet, params, (xin, t), cond.unet_kwargs(), strict=False).sample


def at_timestep(scheduler, num_inference_steps, k, device):
    """Reset the scheduler to its k-th timestep (so Euler's scale_model_input uses that sigma); returns t."""
    scheduler.set_timesteps(num_inference_steps, device=device)
    t = scheduler.timesteps[k]
    if hasattr(scheduler, "_step_index"):       # index-tracking schedulers: look the sigma up from t
        scheduler._step_index = None
    return t


@torch.no_grad()
def denoise(unet, scheduler, noise, cond, uncond, guidance, num_inference_steps, k, params=None, record=False,
            blend=None):
    """First k steps of guided sampling from `noise` (B, 4, h, w). Returns x at timesteps[k], or every
    state [x_0 .. x_k] when record. `blend(x, i)` may replace x after step i (inpainting's blended loop)."""
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    both = Cond.cat([uncond, cond])
    states = [x]
    for i, t in enumerate(scheduler.timesteps[:k]):
        e_u, e_c = unet_eps(unet, scheduler, torch.cat([x, x]), t, both, params).chunk(2)
        x = scheduler.step(e_u + guidance * (e_c - e_u), t, x).prev_sample
        if blend is not None:
            x = blend(x, i + 1)
        if record:
            states.append(x)
    return states if record else x


class XtSource:
    """Draws (x_t, t) for a sampled step k; counts UNet forwards (a guided pass counts 2)."""

    def __init__(self, kind, unet, scheduler, cond, uncond, guidance, num_inference_steps, latent_shape,
                 params=None, bank_size=8, seed=0, device="cpu", dtype=torch.float32, blend=None):
        if kind not in XT_SOURCES:
            raise ValueError(f"unknown xt_source {kind!r}; choose one of {', '.join(XT_SOURCES)}")
        self.kind, self.unet, self.scheduler, self.params = kind, unet, scheduler, params
        self.cond, self.uncond, self.guidance, self.n = cond, uncond, guidance, num_inference_steps
        self.shape, self.device, self.dtype, self.blend = tuple(latent_shape), device, dtype, blend
        self.gen = torch.Generator("cpu").manual_seed(seed)
        self.forwards, self.bank_forwards, self.bank_seconds = 0, 0, 0.0
        self.bank = None
        if kind != "sample":
            self._build_bank(bank_size)

    def _noise(self, b):
        return torch.randn((b,) + self.shape, generator=self.gen).to(self.device, self.dtype)

    def _run(self, noise, k, record=False):
        b = len(noise)
        return denoise(self.unet, self.scheduler, noise, self.cond[:1].repeat(b), self.uncond[:1].repeat(b),
                       self.guidance, self.n, k, self.params, record, self.blend)

    def _build_bank(self, size):
        start = time.time()
        states = self._run(self._noise(size), self.n, record=True)       # n+1 states of (size, 4, h, w)
        self.bank = torch.stack(states, 1)                               # (size, n+1, 4, h, w)
        self.bank_forwards = 2 * self.n * size
        self.bank_seconds = time.time() - start

    def draw(self, k, batch=1):
        """x at timesteps[k] (batch, 4, h, w) and t; the scheduler is left positioned at step k."""
        if self.kind == "sample":
            x = self._run(self._noise(batch), k)
            self.forwards += 2 * k * batch
        else:
            j = torch.randint(0, len(self.bank), (batch,), generator=self.gen)
            x = self.bank[j, k] if self.kind == "cache" else None
        t = at_timestep(self.scheduler, self.n, k, self.device)
        if x is None:                                     # noise: q(x_t | x_0) from the bank's generations
            x = self.scheduler.add_noise(self.bank[j, -1], self._noise(batch), t.expand(batch))
        return x, t

    def cost(self):
        return {"xt_source": self.kind, "sampling_forwards": self.forwards, "bank_forwards": self.bank_forwards,
                "bank_seconds": round(self.bank_seconds, 2), "bank_size": 0 if self.bank is None else len(self.bank)}
