"""Where x_t comes from, and the UNet call every objective uses.

`sample` (faithful ESD): from seeded noise, run the frozen model with classifier-free guidance
for k scheduler steps; costs 2k UNet forwards per iteration (k ~ 25 on average at 50 steps).
`cache`: run `bank_size` full frozen trajectories once, keep x at every step, draw (trajectory,
k) per iteration; the frozen model never changes, so these are the same states `sample` would
visit with the bank's seeds. `noise`: forward-noise the bank's final latents to t with the
scheduler, q(x_t | x_0). `stream`: keep `width` frozen-model trajectories alive beside training
and advance each one guided step per iteration with the teacher's own eps(p) and eps("") (the
two predictions a guided sampling step needs, which the ESD target computes anyway): the same
states as `sample`, no bank, ~0 extra forwards. Every source counts its cost (seconds, forwards).
"""
import time
from dataclasses import dataclass

import torch
from torch.func import functional_call
from tqdm import tqdm

from .families import family_of_denoiser
from .prompts import Cond

XT_SOURCES = {"sample": "run the frozen model k guided steps from seeded noise (faithful; ~2k forwards/iteration)",
              "cache": "draw x_t from a bank of frozen-model trajectories built once (every step kept)",
              "noise": "forward-noise the bank's generated latents to t with the scheduler (q(x_t|x_0))",
              "stream": "frozen-model trajectories advanced one guided step per iteration with the teacher's own "
                        "predictions (the same states as sample; no bank)"}


def _forget_step(scheduler):
    """Index-tracking schedulers (Euler) look the sigma up from t again on their next call."""
    if hasattr(scheduler, "_step_index"):
        scheduler._step_index = None


def _per_timestep(fn, x, t, *rest):
    """fn(x, t, *rest) for a scalar t, or row groups of equal t for a per-row t (B,): schedulers
    take one timestep per call, while stream rows sit at different steps."""
    if t.ndim == 0:
        return fn(x, t, *rest)
    out = torch.empty_like(x)
    for tv in t.unique():
        rows = t == tv
        out[rows] = fn(x[rows], tv, *(r[rows] for r in rest))
    return out


def init_sigma(scheduler):
    """The scale of the starting noise: the scheduler's (DDIM 1, Euler sigma_max); flow matching starts at
    the noise itself (1)."""
    return getattr(scheduler, "init_noise_sigma", 1.0)


def scale_input(scheduler, x, t):
    """scheduler.scale_model_input for a scalar or per-row t (Euler divides by sqrt(sigma^2 + 1))."""
    def scale(x, t):
        _forget_step(scheduler)
        return scheduler.scale_model_input(x, t)
    return _per_timestep(scale, x, t)


def guided_step(scheduler, x, t, eps_c, eps_u, guidance):
    """One classifier-free-guided scheduler step from x at t (scalar or per row)."""
    def step(x, t, e):
        _forget_step(scheduler)
        return scheduler.step(e, t, x).prev_sample
    return _per_timestep(step, x, t, eps_u + guidance * (eps_c - eps_u))


def batch_timesteps(ts, b):
    """The t of a batch made of blocks of b rows, block i at ts[i] (a scalar or (b,)): the shared
    scalar when every block has the same one, else one timestep per row (len(ts) * b,)."""
    if all(t.ndim == 0 for t in ts) and all(bool(t == ts[0]) for t in ts):
        return ts[0]
    return torch.cat([t.reshape(-1).expand(b) for t in ts])


def unet_eps(unet, scheduler, x, t, cond, params=None, extra=None, sampling=False):
    """Noise prediction at (x, t). Inputs go through scheduler.scale_model_input (Euler divides by
    sqrt(sigma^2 + 1)); `params` ({name: tensor}) overrides weights, e.g. the frozen originals.
    `extra` (B, 5, h, w) is appended after scaling, as the SD-inpainting pipeline does for its
    9-channel UNet: cat(x_t, mask, masked-image latent). t is a scalar or one timestep per row.
    A flow-matching denoiser (SD3, Flux) predicts the velocity instead, by its family's call
    (`sampling`: x_t is being sampled, which Flux-dev's guidance input tells apart from the loss)."""
    family = family_of_denoiser(unet)
    if family.PREDICTS == "velocity":
        return family.predict(unet, x, t, cond, params, sampling=sampling)
    xin = scale_input(scheduler, x, t)
    if extra is not None:
        xin = torch.cat([xin, extra.to(xin.dtype)], 1)
    if params is None:
        return unet(xin, t, **cond.unet_kwargs()).sample
    return functional_call(unet, params, (xin, t), cond.unet_kwargs(), strict=False).sample


def at_timestep(scheduler, num_inference_steps, k, device):
    """Reset the scheduler to its k-th timestep (so Euler's scale_model_input uses that sigma); returns t."""
    scheduler.set_timesteps(num_inference_steps, device=device)
    _forget_step(scheduler)
    return scheduler.timesteps[k]


@torch.no_grad()
def denoise(unet, scheduler, noise, cond, uncond, guidance, num_inference_steps, k, params=None, record=False,
            inpaint=None):
    """First k steps of guided sampling from `noise` (B, 4, h, w). Returns x at timesteps[k], or every
    state [x_0 .. x_k] when record. `inpaint` (an Inpainting for these B rows) adds the 9-channel
    inputs, or for a 4-channel UNet blends the known region back after every step."""
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    x = noise * init_sigma(scheduler)
    both = Cond.cat([uncond, cond])
    extra = None if inpaint is None or inpaint.masked is None else inpaint.extra().repeat(2, 1, 1, 1)
    states = [x]
    for i, t in enumerate(scheduler.timesteps[:k]):
        e_u, e_c = unet_eps(unet, scheduler, torch.cat([x, x]), t, both, params, extra, sampling=True).chunk(2)
        x = guided_step(scheduler, x, t, e_c, e_u, guidance)
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
        noised to the state after step i (an int, or one per row; z0 itself after the last step)."""
        ts = scheduler.timesteps
        i = torch.as_tensor(i).expand(len(x))
        _forget_step(scheduler)                   # Euler's add_noise would use its current step for all rows
        known = scheduler.add_noise(self.z0, noise, ts[i.clamp(max=len(ts) - 1).cpu()])
        known = torch.where((i >= len(ts)).view(-1, 1, 1, 1).to(x.device), self.z0, known)
        return self.mask * x + (1 - self.mask) * known


def make_source(kind, unet, scheduler, cond, uncond, guidance, num_inference_steps, latent_shape, params=None,
                bank_size=8, width=1, seed=0, device="cpu", dtype=torch.float32, inpaint=None, desc="x_t"):
    """The x_t source `kind` (a key of XT_SOURCES): a Stream of `width` trajectories, or an XtSource
    (with a bank of `bank_size` trajectories for cache/noise)."""
    if kind == "stream":
        return Stream(unet, scheduler, cond, uncond, guidance, num_inference_steps, latent_shape, params, width,
                      seed, device, inpaint=inpaint, desc=desc)
    return XtSource(kind, unet, scheduler, cond, uncond, guidance, num_inference_steps, latent_shape, params,
                    bank_size, seed, device, dtype, inpaint, desc)


class XtSource:
    """Draws (x_t, t) for a step k; counts UNet forwards (a guided pass counts 2).

    `cond` holds C cases (ESD: one prompt); each trajectory belongs to a case, and `draw` also
    returns the case index of every row, so a caller can pick the matching targets. `inpaint`
    (an Inpainting with C rows) makes every trajectory an inpainting of its case's image.

    The training loop is the same for every source:

        k = source.pick_step(rng)            # uniform k; None for a stream (it knows its steps)
        x, t, cases = source.draw(k, batch)
        ... teacher call: eps(p) and eps("") at x, among the target's predictions ...
        source.advance(eps_p, eps_null)      # a stream moves its trajectories on; others ignore it
    """
    streams = False

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
        if kind in ("cache", "noise"):
            self._build_bank(bank_size, desc + " bank")

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

    def pick_step(self, rng):
        """The step k of the next draw, uniform over the scheduler's grid."""
        return int(rng.integers(0, self.n))

    def advance(self, eps_c, eps_u):
        """Only a stream uses the teacher's predictions to move on."""

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

    def state(self):
        """What a checkpoint keeps for an exact resume: tensors (restored in place, then `restore`) and
        JSON. The bank itself is rebuilt from the seed, the same at every start."""
        return [self.gen.get_state()], {"forwards": self.forwards}

    def restore(self, tensors, info):
        """After the checkpoint's values were copied into `state()`'s tensors: the rest of the state."""
        self.gen.set_state(tensors[0])
        self.forwards = info["forwards"]

    def cost(self):
        return {"xt_source": self.kind, "sampling_forwards": self.forwards, "bank_forwards": self.bank_forwards,
                "bank_seconds": round(self.bank_seconds, 2), "bank_size": 0 if self.bank is None else len(self.bank)}


WARMUP_CHUNK = 4    # trajectories per warm-up UNet call (8 rows): all 16 at once (32 rows) raised the peak of
                    # SD-1.4-size grid training by 290 MiB at 256 px on the CPU (docs/real_size.md)


class Stream(XtSource):
    """`width` frozen-model trajectories, advanced one guided step per iteration with the teacher's
    own eps(p) and eps("") at x_t: the states `sample` visits with the same noise, but no bank and
    no sampling passes in the loop.

    Trajectory j starts at step j * n // width (a warm-up of about width * n / 2 guided steps), so
    the trained step k is close to uniform from the first iteration. `draw(None, b)` hands out the
    next b trajectories round-robin at their current steps (t is one timestep per row); `advance`
    moves those rows one step, and a row at its last step restarts with the next case (every case
    once before any repeats) and fresh noise. States are kept in fp32 whatever the compute dtype.
    """
    streams = True

    def __init__(self, unet, scheduler, cond, uncond, guidance, num_inference_steps, latent_shape, params=None,
                 width=1, seed=0, device="cpu", inpaint=None, desc="x_t"):
        super().__init__("stream", unet, scheduler, cond, uncond, guidance, num_inference_steps, latent_shape,
                         params, 0, seed, device, torch.float32, inpaint, desc)
        if width < 1:
            raise ValueError(f"stream width must be at least 1, got {width}; pass --stream_width 1 or more")
        self.width, self.queue, self.restarts, self.ptr, self.rows = width, [], 0, 0, None
        self.k_histogram = [0] * self.n
        self.case = self._next_cases(width)
        self.noise = self._noise(width)                                  # (width, 4, h, w), kept for blending
        scheduler.set_timesteps(self.n, device=device)
        self.x = self.noise * init_sigma(scheduler)
        self.k = torch.zeros(width, dtype=torch.long)
        self._warm_up((torch.arange(width) * self.n) // width, desc)

    def _next_cases(self, m):
        if len(self.cond) == 1:                           # one case: leave the noise stream untouched
            return torch.zeros(m, dtype=torch.long)
        while len(self.queue) < m:
            self.queue += torch.randperm(len(self.cond), generator=self.gen).tolist()
        out, self.queue = self.queue[:m], self.queue[m:]
        return torch.tensor(out)

    @torch.no_grad()
    def _warm_up(self, offsets, desc):
        """Guided steps until trajectory j stands at step offsets[j] (the rows still short of their offset
        share each step's batched UNet calls, WARMUP_CHUNK trajectories a call)."""
        start = time.time()
        for s in tqdm(range(int(offsets.max())), desc=desc + " stream warm-up", unit="step", leave=False):
            for self.rows in torch.nonzero(offsets > s).flatten().split(WARMUP_CHUNK):
                c = self.case[self.rows]
                t = self.scheduler.timesteps[self.k[self.rows]]
                x = self.x[self.rows]
                extra = None if self.inpaint is None or self.inpaint.masked is None else self.inpaint[c].extra()
                e_u, e_c = unet_eps(self.unet, self.scheduler, torch.cat([x, x]), torch.cat([t, t]),
                                    Cond.cat([self.uncond[:1].repeat(len(x)), self.cond[c]]), self.params,
                                    None if extra is None else extra.repeat(2, 1, 1, 1), sampling=True).chunk(2)
                self.advance(e_c, e_u, count=False)
                self.forwards += 2 * len(x)
        self.warmup_forwards, self.warmup_seconds = self.forwards, time.time() - start

    def pick_step(self, rng):
        return None

    def draw(self, k=None, batch=1):
        """The next `batch` trajectories: x (batch, 4, h, w) fp32, t (batch,), case index (batch,)."""
        if k is not None:
            raise ValueError("a stream picks its own steps; call draw(None, batch)")
        if batch > self.width:
            raise ValueError(f"batch {batch} exceeds the stream width {self.width}; use --stream_width >= batch")
        self.rows = (self.ptr + torch.arange(batch)) % self.width
        self.ptr = (self.ptr + batch) % self.width
        self.scheduler.set_timesteps(self.n, device=self.device)
        k = self.k[self.rows]
        for v in k.tolist():
            self.k_histogram[v] += 1
        return self.x[self.rows], self.scheduler.timesteps[k], self.case[self.rows]

    @torch.no_grad()
    def advance(self, eps_c, eps_u, count=True):
        """One guided step for the rows of the last draw, from the teacher's eps(p) and eps("") there
        (B, 4, h, w) each; rows at their last step restart instead."""
        rows, ts = self.rows, self.scheduler.timesteps
        last = self.k[rows] == self.n - 1
        go, new = rows[~last], rows[last]
        if len(go):
            k = self.k[go]
            x = guided_step(self.scheduler, self.x[go], ts[k], eps_c[~last].float(), eps_u[~last].float(),
                            self.guidance)
            if self.inpaint is not None and self.inpaint.masked is None:       # 4-channel blended loop
                x = self.inpaint[self.case[go]].blend(x, self.scheduler, k + 1, self.noise[go])
            self.x[go], self.k[go] = x, k + 1
        if len(new):
            self.case[new] = self._next_cases(len(new))
            self.noise[new] = self._noise(len(new))
            self.x[new], self.k[new] = self.noise[new] * init_sigma(self.scheduler), 0
            self.restarts += int(count) * len(new)

    def state(self):
        """The live trajectories (x, their steps k, noise, cases), the generator, the case queue and
        the counters: a resumed stream continues exactly where the checkpoint left it."""
        return [self.gen.get_state(), self.x, self.k, self.noise, self.case], \
            {"forwards": self.forwards, "queue": self.queue, "ptr": self.ptr, "restarts": self.restarts,
             "k_histogram": self.k_histogram}

    def restore(self, tensors, info):
        super().restore(tensors, info)
        self.queue, self.ptr, self.restarts = list(info["queue"]), info["ptr"], info["restarts"]
        self.k_histogram = list(info["k_histogram"])

    def cost(self):
        return {"xt_source": "stream", "stream_width": self.width, "sampling_forwards": self.forwards,
                "warmup_forwards": self.warmup_forwards, "warmup_seconds": round(self.warmup_seconds, 2),
                "bank_forwards": 0, "bank_seconds": 0.0, "bank_size": 0, "restarts": self.restarts,
                "k_histogram": self.k_histogram}
