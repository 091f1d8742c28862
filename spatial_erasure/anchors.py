"""Broad preservation (`--preserve N`): anchor prompts, random prompts about unrelated things, in
many styles, with words outside the toy vocabulary, so that preservation covers more than the other
artists' usual phrasings; and `KeyValuePenalty`, which keeps their cross-attention keys and values.

    anchor_prompts(200, seed=0, exclude=["Vincent van Gogh"])
    penalty = KeyValuePenalty(encode(pipe, anchors), st.params, originals)     # penalty(st.params): a scalar

Kept apart from the collateral evaluation: a prompt equal (normalised) to any phrasing the
collateral generator can produce (`phrasings.every_phrasing`) is never drawn, so that evaluation
stays unseen by every trainer. The erased concepts (`exclude`) never appear.
"""
import numpy as np
import torch

from .errors import InputError

from .toyart.world import ARTISTS, GENERIC_STYLES, SUBJECTS

NOUNS = SUBJECTS + ["dog", "cat", "bicycle", "kitchen", "ocean", "city", "forest", "chair", "bridge", "river",
                    "street", "garden", "window", "bird", "robot", "cup", "book", "lamp", "castle", "train"]
ADJECTIVES = ["red", "old", "small", "bright", "quiet", "wooden", "modern", "foggy", "tiny", "golden", "empty",
              "green"]
MEDIA = ["a photo", "a photograph", "a painting", "a drawing", "a sketch", "a watercolor", "an oil painting",
         "a 3d render", "pixel art", "a poster", "an illustration", "a snapshot"]
TEMPLATES = ["{medium} of a {adj} {noun}", "{adj} {noun} next to a {noun2}", "{medium} of a {noun} and a {noun2}",
             "a {adj} {noun}, {medium}", "{noun} with {adj} {noun2}", "{medium} of a {noun} by {artist}",
             "a {noun} in {style} style near a {noun2}", "{adj} {noun}, {adj2} light"]


def anchor_prompts(n, seed=0, exclude=()):
    """n distinct anchor prompts drawn with `seed`: templates x nouns, adjectives, media and the styles
    and artists not in `exclude`; never a collateral phrasing, never an excluded concept."""
    from .phrasings import every_phrasing, normalise
    taken = {normalise(p.prompt) for p in every_phrasing()}
    artists = [a for a in ARTISTS if a not in exclude] or ["an unknown artist"]
    styles = [s for s in GENERIC_STYLES if s not in exclude] or ["plain"]
    banned = [e.lower() for e in exclude]
    rng = np.random.default_rng(seed)
    pick = lambda pool: pool[int(rng.integers(len(pool)))]  # noqa: E731
    out, seen = [], set()
    for _ in range(100 * n):
        if len(out) == n:
            break
        text = pick(TEMPLATES).format(medium=pick(MEDIA), adj=pick(ADJECTIVES), adj2=pick(ADJECTIVES),
                                      noun=pick(NOUNS), noun2=pick(NOUNS), artist=pick(artists), style=pick(styles))
        key = normalise(text)
        if key in seen or key in taken or any(b in key for b in banned):
            continue
        seen.add(key)
        out.append(text)
    return out


class KeyValuePenalty:
    """UCE's preservation idea (Gandikota et al., 2024) as a closed-form penalty: every trained
    cross-attention key and value projection W (attn2.to_k / to_v weights) should map the preserved
    prompts' text-encoder outputs k as the original W0 does. Over all their tokens K (n, D), with
    C = K^T K / n and dW = W - W0,

        mean_k |dW k|^2 / mean_k |W0 k|^2  =  tr(dW C dW^T) / tr(W0 C W0^T)

    exactly, whatever the batch (no sampled prompts, no extra UNet call); the penalty is its mean
    over the projections. `cond` is the preserved prompts' encoding (prompts.Cond), `params` the
    trained tensors, `originals` their values before training.

    Where the text tokens pass through per-timestep modulation before the projections (SD3's and
    Flux's joint blocks), K is instead what each projection itself receives, block by block, along
    the anchors' own sampled trajectories: `moments` ({module name: C}, `input_moments`). The
    formula is the same and exact for those inputs; the blocks' later inputs move with training, so it
    holds to first order."""

    def __init__(self, cond, params, originals, moments=None):
        if moments is None:                  # SD, SDXL: every projection sees the text encoder's tokens
            k = cond.emb.reshape(-1, cond.emb.shape[-1]).float()
            c = k.T @ k / len(k)                                             # (D, D)
            self.names = [n for n in params if n.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))]
            self.c = {n: c for n in self.names}
        else:                                # SD3, Flux: each projection's own inputs (input_moments)
            self.names = [n for n in params if n.endswith(".weight") and n[:-len(".weight")] in moments]
            self.c = {n: moments[n[:-len(".weight")]] for n in self.names}    # (D + 1, D + 1): [x, 1]
        # a trained bias b joins its weight as the last column: W [x, 1] = W x + b
        self.bias = {n: n[:-len("weight")] + "bias" for n in self.names if n[:-len("weight")] + "bias" in params}
        self.w0 = {n: self._full(originals, n).detach().float().clone() for n in self.names}
        self.scale = {n: float(((w @ self._c(n, w)) * w).sum()) for n, w in self.w0.items()}

    def _full(self, params, n):
        return torch.cat([params[n], params[self.bias[n]][:, None]], 1) if n in self.bias else params[n]

    def _c(self, n, w):
        return self.c[n][:w.shape[1], :w.shape[1]]          # without a trained bias: the inputs' own moment

    def __len__(self):
        return len(self.names)

    def __call__(self, params):
        if not self.names:
            return self.c.new_zeros(())
        terms = []
        for n in self.names:
            dw = self._full(params, n).float() - self.w0[n]
            terms.append(((dw @ self._c(n, dw)) * dw).sum() / self.scale[n])
        return torch.stack(terms).mean()


def key_value_penalty(cond, params, originals, weight, train_method, moments=None):
    """The KeyValuePenalty over the anchors' encoding `cond` (or the `moments` of what each projection
    sees), or None when its `weight` (--preserve_kv) is 0; one line naming the fix when
    `train_method` trains no key or value projection."""
    if not weight:
        return None
    penalty = KeyValuePenalty(cond, params, originals, moments)
    if not len(penalty):
        raise InputError(f"--preserve_kv keeps cross-attention keys and values, which --train_method "
                         f"{train_method} does not train; pass --preserve_kv 0 or --train_method esd-x")
    return penalty


@torch.no_grad()
def input_moments(denoiser, scheduler, cond, null, names, latent_shape, guidance, steps, seed, params=None,
                  chunk=50):
    """{module name: C (D + 1, D + 1)}: the second moment of [x, 1] for the inputs x each module in
    `names` receives (all text tokens; the 1 carries a bias), over every state of the anchors' own
    guided trajectories (`cond`, `steps` steps, `guidance`, seeded noise of `latent_shape` (C, h, w)),
    the denoiser called with `params` (the frozen originals). The modules' inputs are taken from the
    conditional half of each guided call."""
    from .trajectories import denoise
    modules = dict(denoiser.named_modules())
    sums, counts = {}, {}

    def keep(name):
        def hook(module, inputs):
            x = inputs[0]
            x = x[len(x) // 2:].reshape(-1, x.shape[-1]).float()       # denoise batches ("", cond)
            x = torch.cat([x, x.new_ones(len(x), 1)], 1)                 # [x, 1]: the bias's column
            sums[name] = sums.get(name, 0) + x.T @ x
            counts[name] = counts.get(name, 0) + len(x)
        return hook

    handles = [modules[n].register_forward_pre_hook(keep(n)) for n in names]
    try:
        gen = torch.Generator().manual_seed(seed)
        p = next(denoiser.parameters())
        for i in range(0, len(cond), chunk):
            c = cond[i:i + chunk]
            noise = torch.randn((len(c), *latent_shape), generator=gen).to(p.device, p.dtype)
            denoise(denoiser, scheduler, noise, c, null.repeat(len(c)), guidance, steps, steps, params)
    finally:
        for h in handles:
            h.remove()
    return {n: sums[n] / counts[n] for n in names}
