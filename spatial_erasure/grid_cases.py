"""Grid erasure's cases and their sources: what `grid_erasure.main` trains on.

    cases = build_cases(st, cfg, res, latent)            # prompt variations x masks, retain prompts, anchors
    sources = build_sources(st, cfg, cases, res, latent) # source images, inpainting inputs, x_t trajectories

A case is one prompt variation p (with its neutral twin p0) and one mask M of the G x G grid plus
centre (`--global_share`: also the whole image), with a retain prompt r drawn for it (`retain_draws`).
The sources: one source image per variation, generated once from its twin, the inpainting inputs of
every case, and the x_t trajectories of the concept's (or, `--target twin`, the twin's) prompts and
of the retain prompts. The records are `grid_records`' GridCases and GridSources, which
`objectives.grid_erasure_loss` reads.
"""
import time
import numpy as np
import torch
from tqdm import tqdm

from .anchors import anchor_prompts
from .grid_records import GridCases, GridSources
from .masks import grid_masks, mask_names, to_latent
from .prompts import concept_variations, encode, parse_concepts, retain_prompts
from .trajectories import Inpainting, denoise, make_source
from .worlds import world_of

# --preserve N: the share of cases whose retain prompt is an anchor (the rest keep another artist or style,
# which the toy bars measure); the retain term's cost stays one teacher and one student row per case.
ANCHOR_SHARE = 0.5


def concepts_of(cfg):
    """The concepts --concept names (parse_concepts: one, 'A;B;C' or a concept CSV)."""
    return [c for c, _ in parse_concepts(cfg.concept)]


def retain_draws(n_cases, n_retain, n_anchors, seed):
    """(C,) each case's retain prompt, an index into retain + anchors: uniform over the R retain
    prompts; with anchors, ANCHOR_SHARE of the cases (chosen at random) take one instead, every
    anchor once before any repeats."""
    rng = np.random.default_rng(seed)
    r_of = rng.integers(0, n_retain, n_cases)
    if n_anchors:
        picked = rng.permutation(n_cases)[:round(ANCHOR_SHARE * n_cases)]
        r_of[picked] = n_retain + rng.permutation(np.arange(len(picked)) % n_anchors)
    return torch.as_tensor(r_of)


def build_cases(st, cfg, res, latent):
    """Prompt variations of every concept (main writes them to the prompts CSV) x masks, retain prompts and
    anchors, all encoded once."""
    pipe, world = st.pipe, world_of(st.pipe)
    concepts = concepts_of(cfg)
    # --num_prompts per concept; concept j's variations drawn with seed + j (its own phrasing order and
    # source images; one concept: as before), numbered across all concepts
    rows = [{**r, **({"concept": c} if len(concepts) > 1 else {})}
            for j, c in enumerate(concepts) for r in concept_variations(c, cfg.num_prompts, world, cfg.seed + j)]
    rows = [{**r, "case_number": i} for i, r in enumerate(rows)]
    anchors = anchor_prompts(cfg.preserve, cfg.seed, exclude=concepts) if cfg.preserve else []
    pooled = anchors if cfg.preserve_weight else []           # the anchors with rows in the retain term
    retain = retain_prompts(concepts, world, cfg.retain_templates) + pooled
    concept = encode(pipe, [r["prompt"] for r in rows], res)
    neutral = encode(pipe, [r["neutral"] for r in rows], res)
    null, retain_c = encode(pipe, [""], res), encode(pipe, retain, res)
    anchors_c = encode(pipe, anchors, res) if cfg.preserve_kv else None
    retain_w = torch.tensor([1.0] * (len(retain) - len(pooled)) + [cfg.preserve_weight] * len(pooled)) \
        if pooled and cfg.preserve_weight != 1 else None
    pix = grid_masks(res, cfg.grid, cfg.center)                          # (M, 1, res, res)
    names, n_masks = mask_names(cfg.grid, cfg.center), len(pix)
    # cases: every (prompt variation, grid mask) pair, then the whole-image cases (mask index M)
    v_of = torch.arange(len(rows)).repeat_interleave(n_masks)
    m_of = torch.arange(n_masks).repeat(len(rows))
    n_global = round(cfg.global_share / (1 - cfg.global_share) * len(v_of))
    if n_global:
        pix, names = torch.cat([pix, torch.ones_like(pix[:1])]), names + ["whole image"]
        v_of = torch.cat([v_of, torch.arange(n_global) % len(rows)])
        m_of = torch.cat([m_of, torch.full((n_global,), n_masks)])
    lat = to_latent(pix, latent[-1]).to(st.device, st.dtype)               # (M [+1], 1, h, w)
    r_of = retain_draws(len(v_of), len(retain) - len(pooled), len(pooled), cfg.seed + 1)   # retain prompt
    return GridCases(concepts, rows, concept, neutral, null, retain, len(pooled), retain_c, pix, lat, names, v_of,
                     m_of, r_of, n_masks, n_global, anchors_c, retain_w)


@torch.no_grad()
def masked_latents(vae, z0, images_of, pixel_masks, chunk=32):
    """Latents of each case's image with its mask region blanked (0 in [-1, 1], as diffusers does).
    z0 (V, 4, h, w) is decoded once per image; `images_of` (C,) picks each case's image."""
    s = vae.config.scaling_factor
    images = torch.cat([vae.decode(z0[i:i + chunk] / s).sample for i in range(0, len(z0), chunk)])
    out = []
    for i in range(0, len(images_of), chunk):
        m = pixel_masks[i:i + chunk].to(images.dtype)
        out.append(vae.encode(images[images_of[i:i + chunk]] * (m < 0.5)).latent_dist.mode() * s)
    return torch.cat(out)


@torch.no_grad()
def source_latents(st, neutral, null, seeds, res, latent, n_steps, guidance, chunk=32):
    """The image each neutral twin inpaints into: generated once by the frozen model from its seed
    (a 9-channel UNet generates with the whole image masked)."""
    pipe, out = st.pipe, []
    blank = None
    if pipe.unet.config.in_channels == 9:          # the latent of a grey image, the "masked image" of every case
        grey = torch.zeros(1, 3, res, res, device=st.device, dtype=st.dtype)
        blank = pipe.vae.encode(grey).latent_dist.mode() * pipe.vae.config.scaling_factor
    for i in tqdm(range(0, len(seeds), chunk), desc="source images", unit="chunk", leave=False):
        s = seeds[i:i + chunk]
        noise = torch.stack([torch.randn(latent, generator=torch.Generator().manual_seed(int(x))) for x in s])
        noise = noise.to(st.device, st.dtype)
        inpaint = None
        if blank is not None:
            ones = torch.ones(len(s), 1, *latent[1:], device=st.device, dtype=st.dtype)
            inpaint = Inpainting(torch.zeros_like(noise), ones, blank.repeat(len(s), 1, 1, 1))
        out.append(denoise(st.teacher_unet, pipe.scheduler, noise, neutral[i:i + chunk], null.repeat(len(s)), guidance,
                           n_steps, n_steps, st.teacher_params, inpaint=inpaint))
    return torch.cat(out)


def build_sources(st, cfg, cases, res, latent):
    """Source images (generated once), each case's inpainting inputs, and the x_t trajectories of the
    concept prompts and (--retain_xt own) of the retain prompts: a bank, or a stream's warm-up."""
    pipe = st.pipe
    nine = pipe.unet.config.in_channels == 9
    own = cfg.retain_weight > 0 and cfg.retain_xt == "own"
    start = time.time()
    with st.autocast():
        z0 = source_latents(st, cases.neutral, cases.null, [r["evaluation_seed"] for r in cases.rows], res, latent,
                            cfg.num_inference_steps, cfg.guidance_scale)
        inpainting = Inpainting(z0[cases.v_of], cases.lat[cases.m_of],
                                masked_latents(pipe.vae, z0, cases.v_of, cases.pix[cases.m_of].to(st.device))
                                if nine else None)
        st.offload("vae")
        source_seconds = time.time() - start
        common = dict(params=st.teacher_params, width=cfg.stream_width, device=st.device, dtype=st.dtype,
                      inpaint=inpainting)
        prompts = cases.neutral if cfg.target == "twin" else cases.concept     # whose trajectories x_t follows
        concept = make_source(cfg.xt_source, st.teacher_unet, pipe.scheduler, prompts[cases.v_of], cases.null,
                              cfg.guidance_scale, cfg.num_inference_steps, latent, bank_size=cfg.bank_size,
                              seed=st.process_seed(cfg.seed), desc="x_t", **common)
        # the retain prompt r_of[c] inpainting case c's image and mask, from its own trajectory
        retain = make_source(cfg.xt_source, st.teacher_unet, pipe.scheduler, cases.retain_c[cases.r_of], cases.null,
                             cfg.guidance_scale, cfg.num_inference_steps, latent, bank_size=cfg.retain_bank_size,
                             seed=st.process_seed(cfg.seed + 1), desc="retain x_t", **common) if own else None
    return GridSources(inpainting, concept, retain, source_seconds)
