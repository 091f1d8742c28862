"""Where x_t comes from, and the UNet call every objective uses.

`sample` (faithful ESD): from seeded noise, run the frozen model with classifier-free guidance
for k scheduler steps; costs 2k UNet forwards per iteration (k ~ 25 on average at 50 steps).
`cache`: run `bank_size` full frozen trajectories once, keep x at every step, draw (trajectory,
k) per iteration; the frozen model never changes, so these are the same states `sample` would
visit with the bank's seeds. `noise`: forward-noise the bank's final latents to t with the
scheduler, q(x_t | x_0). The bank's cost (seconds, forwards) is counted and reported.
"""
import time
from dataclasses import dataclass

import torch
from torch.func import functional_call
from tqdm import tqdm

from .prompts import Cond

XT_SOURCES = {"sample": "run the frozen model k guided steps from seeded noise (faithful; ~2k forwards/iteration)",
              "cache": "draw x_t from a bank of frozen-model trajectories built once (every step kept)",
              "noise": "forward-noise the bank's generated latents to t with the scheduler (q(x_t|x_0))"}


def unet_eps(unet, scheduler, x, t, cond, params=None, extra=None):
    """Noise prediction at (x, t). Inputs go through scheduler.scale_model_input (Euler divides by
    sqrt(sigma^2 + 1)); `params` ({name: tensor}) overrides weights, e.g. the frozen originals.
    `extra` (B, 5, h, w) is appended after scaling, as the SD-inpainting pipeline does for its
    9-channel UNet: cat(x_t, mask, masked-image latent)."""
    xin = scheduler.scale_model_input(x, t)
    if extra is not None:
        xin = torch.cat([xin, extra.to(xin.dtype)], 1)
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
            inpaint=None):
    """First k steps of guided sampling from `noise` (B, 4, h, w). Returns x at timesteps[k], or every
    state [x_0 .. x_k] when record. `inpaint` (an Inpainting for these B rows) adds the 9-channel
    inputs, or for a 4-channel UNet blends the known region back after every step."""
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    both = Cond.cat([uncond, cond])
    extra = None if inpaint is None or inpaint.masked is None else inpaint.extra().repeat(2, 1, 1, 1)
    states = [x]
    for i, t in enumerate(scheduler.timesteps[:k]):
        e_u, e_c = unet_eps(unet, scheduler, torch.cat([x, x]), t, both, params, extra).chunk(2)
        x = scheduler.step(e_u + guidance * (e_c - e_u), t, x).prev_sample
        if inpaint is not None and inpaint.masked is None:
            x = inpaint.blend(x, scheduler, i + 1, noise)
        if record:
            states.append(x)
    return states if record else x


@dataclass
class Inpainting:
    """Inpainting inputs for a batch of trajectories, in latent space: `z0` (B, 4, h, w) the image
    being inpainted, `mask` (B, 1, h, w) 1 = region to repaint, and for a 9-channel UNet `masked`
    (B, 4, h, w), the latent of the image with the region blanked (None for a 4-channel UNet)."""
    z0: torch.Tensor
    mask: torch.Tensor
    masked: torch.Tensor = None

    def __getitem__(self, idx):
        return Inpainting(self.z0[idx], self.mask[idx], None if self.masked is None else self.masked[idx])

    def extra(self):
        """The 9-channel UNet's extra inputs (B, 5, h, w): mask, then masked-image latent."""
        return torch.cat([self.mask, self.masked], 1)

    def blend(self, x, scheduler, i, noise):
        """4-channel blended loop (as diffusers' inpainting pipeline): outside the mask, x becomes z0
        noised to the state after step i (z0 itself after the last step)."""
        ts = scheduler.timesteps
        known = self.z0 if i >= len(ts) else scheduler.add_noise(self.z0, noise, ts[i:i + 1].expand(len(x)))
        return self.mask * x + (1 - self.mask) * known


class XtSource:
    """Draws (x_t, t) for a sampled step k; counts UNet forwards (a guided pass counts 2).

    `cond` holds C cases (ESD: one prompt); each trajectory belongs to a case, and `draw` also
    returns the case index of every row, so a caller can pick the matching targets. `inpaint`
    (an Inpainting with C rows) makes every trajectory an inpainting of its case's image."""

    def __init__(self, kind, unet, scheduler, cond, uncond, guidance, num_inference_steps, latent_shape,
                 params=None, bank_size=8, seed=0, device="cpu", dtype=torch.float32, inpaint=None, desc="x_t bank"):
        if kind not in XT_SOURCES:
            raise ValueError(f"unknown xt_source {kind!r}; choose one of {', '.join(XT_SOURCES)}")
        self.kind, self.unet, self.scheduler, self.params = kind, unet, scheduler, params
        self.cond, self.uncond, self.guidance, self.n = cond, uncond, guidance, num_inference_steps
        self.shape, self.device, self.dtype, self.inpaint = tuple(latent_shape), device, dtype, inpaint
        self.gen = torch.Generator("cpu").manual_seed(seed)
        self.forwards, self.bank_forwards, self.bank_seconds = 0, 0, 0.0
        self.bank = None
        if kind != "sample":
            self._build_bank(bank_size, desc)

    def _noise(self, b):
        return torch.randn((b,) + self.shape, generator=self.gen).to(self.device, self.dtype)

    def _cases(self, b):
        if len(self.cond) == 1:                           # one case: leave the noise stream untouched
            return torch.zeros(b, dtype=torch.long)
        return torch.randint(0, len(self.cond), (b,), generator=self.gen)

    def _run(self, noise, cases, k, record=False):
        inpaint = None if self.inpaint is None else self.inpaint[cases]
        return denoise(self.unet, self.scheduler, noise, self.cond[cases], self.uncond[:1].repeat(len(noise)),
                       self.guidance, self.n, k, self.params, record, inpaint)

    def _build_bank(self, size, desc, chunk=64):
        start = time.time()
        # every case once before any repeats (a bank as large as the cases covers them all)
        c = len(self.cond)
        self.bank_cases = torch.zeros(size, dtype=torch.long) if c == 1 else torch.cat(
            [torch.randperm(c, generator=self.gen) for _ in range(-(-size // c))])[:size]
        noise = self._noise(size)
        parts = []
        with tqdm(total=size, desc=desc, unit="trajectory", leave=False) as bar:
            for i in range(0, size, chunk):
                parts.append(torch.stack(self._run(noise[i:i + chunk], self.bank_cases[i:i + chunk], self.n,
                                                   record=True), 1))
                bar.update(len(parts[-1]))
        self.bank = torch.cat(parts)                                     # (size, n+1, 4, h, w)
        self.bank_forwards = 2 * self.n * size
        self.bank_seconds = time.time() - start

    def draw(self, k, batch=1):
        """x at timesteps[k] (batch, 4, h, w), t, and each row's case index (batch,); the scheduler is
        left positioned at step k."""
        if self.kind == "sample":
            cases = self._cases(batch)
            x = self._run(self._noise(batch), cases, k)
            self.forwards += 2 * k * batch
        else:
            j = torch.randint(0, len(self.bank), (batch,), generator=self.gen)
            cases = self.bank_cases[j]
            x = self.bank[j, k] if self.kind == "cache" else None
        t = at_timestep(self.scheduler, self.n, k, self.device)
        if x is None:                                     # noise: q(x_t | x_0) from the bank's generations
            x = self.scheduler.add_noise(self.bank[j, -1], self._noise(batch), t.expand(batch))
        return x, t, cases

    def cost(self):
        return {"xt_source": self.kind, "sampling_forwards": self.forwards, "bank_forwards": self.bank_forwards,
                "bank_seconds": round(self.bank_seconds, 2), "bank_size": 0 if self.bank is None else len(self.bank)}
