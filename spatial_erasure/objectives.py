"""The objectives, one named function each: `esd_loss` (ESD), `twin_loss` (the concept mapped onto
its neutral twin) and `grid_erasure_loss` (inpainting erasure) compute one iteration's loss in the
numbered steps of their docstring's formula:

    1. draw x_t from the source    2. one batched teacher call    3. advance the source
    4. the student call            5. the loss

and the pieces they share: `teacher_eps` (frozen-model predictions, one UNet call), `esd_target`,
`masked_mse` and `grid_loss_terms`. Notation: eps(x_t, p) is the frozen model's noise prediction
for prompt p (the teacher: the trained UNet called with the original values of its trained tensors),
student(x_t, p) the trained UNet's; eta = --negative_guidance.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .grid_records import GridCases, GridSources
from .prompts import Cond
from .trajectories import batch_timesteps, unet_eps


@torch.no_grad()
def teacher_eps(unet, scheduler, x, t, conds, params, extra=None):
    """Frozen-model noise predictions for each Cond in `conds`, in ONE UNet call: batch
    (len(conds) * B). `x` (B, 4, h, w) is shared by every Cond, or a list with one x per Cond (e.g.
    the retain prompt at its own x_t); `t` (a scalar, or (B,) for stream rows at different steps)
    and `extra`, the 9-channel inpainting inputs, likewise. `params` holds the original values of
    the trained tensors (None when `unet` is itself the frozen copy)."""
    n = len(conds)
    xs, ts, extras = ([v] * n if not isinstance(v, (list, tuple)) else list(v) for v in (x, t, extra))
    b = len(xs[0])
    out = unet_eps(unet, scheduler, torch.cat(xs), batch_timesteps(ts, b),
                   Cond.cat([c.repeat(b) if len(c) == 1 else c for c in conds]),
                   params, None if extras[0] is None else torch.cat(extras))
    return out.chunk(n)


def esd_target(eps_from, eps_c, eps_null, negative_guidance):
    """ESD (Gandikota et al. 2023): steer away from the concept by the guidance direction."""
    return eps_from - negative_guidance * (eps_c - eps_null)


def masked_mse(pred, target, mask=None):
    """MSE over the latent pixels where mask (B or 1, 1, h, w) is 1; plain MSE when mask is None.
    Pixels outside the mask get exactly zero gradient."""
    if mask is None:
        return F.mse_loss(pred.float(), target.float())
    mask = mask.to(pred.dtype).expand_as(pred)
    return ((pred.float() - target.float()) ** 2 * mask).sum() / mask.sum().clamp(min=1)


def draw_anchors(rng, prompts, anchor_source, x, t, batch):
    """(x_a, t_a, anchor prompts) of `batch` rows for --preserve, or (None, None, None) without anchors:
    random anchors at the concept's x_t, or, with `anchor_source` (--preserve_xt own), states of the
    anchors' own trajectories, each with its own anchor."""
    if prompts.anchors is None:
        return None, None, None
    if anchor_source is None:
        return x, t, prompts.anchors[torch.as_tensor(rng.integers(0, len(prompts.anchors), batch))]
    xa, ta, ca = anchor_source.draw(anchor_source.pick_step(rng), batch)
    return xa, ta, prompts.anchors[ca]


@dataclass
class EsdPrompts:
    """ESD's prompts, encoded once: the concept c, the empty prompt "", and the prompt it is erased
    from (the concept itself unless --erase_from; `separate_from` when given, which costs one more
    teacher row). With several concepts, `concept` and `erase_from` have one row per concept, and
    each x_t row's case says which."""
    concept: Cond
    null: Cond
    erase_from: Cond
    separate_from: bool
    anchors: Cond = None            # --preserve: anchor prompts whose predictions are kept
    preserve_weight: float = 1.0
    twin: Cond = None               # --target twin: each case's neutral twin (erase_from without the concept)


def esd_loss(rng, st, source, prompts, batch, negative_guidance, anchor_source=None, adversary=None):
    """ESD's loss for one iteration, on `batch` rows:

        MSE( student(x_t, from),  eps(x_t, from) - eta * (eps(x_t, c) - eps(x_t, "")) )
      + preserve_weight * MSE( student(x_a, a),  eps(x_a, a) )      with --preserve: anchors a
      + robust_weight * MSE( student(x_t, adv),  the same target )   with --robust

    `st` is the trainer.Student (trained UNet, teacher, scheduler), `source` the x_t source,
    `prompts` an EsdPrompts, `rng` the trainer's numpy Generator (it picks the step k). The anchors
    are drawn at random and taken at the concept's x_t (x_a = x_t), or, with `anchor_source`
    (--preserve_xt own), x_a is a state of their own trajectories, whose case is the anchor. With an
    `adversary` (adversarial.Adversary, --robust), its inner attack first finds adversarial prompts
    `adv` that make the student paint the concept at x_t again; the student is erased from them too."""
    unet, scheduler = st.denoiser, st.pipe.scheduler
    # 1. draw x_t at a step k (a stream hands out its trajectories at their own steps), and each
    #    row's concept (its case: always 0 for one concept) [and the anchors' x_a]
    x, t, cases = source.draw(source.pick_step(rng), batch)
    concept, erase_from = prompts.concept[cases], prompts.erase_from[cases]
    xa, ta, anchors = draw_anchors(rng, prompts, anchor_source, x, t, batch)
    # 2. one batched teacher call: eps(c), eps("") [and eps(from)] at x_t [and eps(a) at x_a, with
    #    eps("") there too when the anchors' trajectories stream: they need it to move on]
    calls = [(concept, x, t), (prompts.null, x, t)] + ([(erase_from, x, t)] if prompts.separate_from else [])
    n = len(calls)                                 # eps[n]: the anchors'
    if anchors is not None:
        calls.append((anchors, xa, ta))
        if anchor_source is not None and anchor_source.streams:
            calls.append((prompts.null, xa, ta))
    eps = teacher_eps(st.teacher_unet, scheduler, [c[1] for c in calls], [c[2] for c in calls],
                      [c[0] for c in calls], st.teacher_params)
    eps_c, eps_null = eps[0], eps[1]
    eps_from = eps[2] if prompts.separate_from else eps_c
    # 3. advance the sources: a stream takes the frozen trajectory's guided step on these, for free
    source.advance(eps_from, eps_null)
    if anchor_source is not None:
        anchor_source.advance(eps[n], eps[-1])
    # 3b. --robust: the inner attack on the student at x_t, toward the concept's frozen prediction
    adv = None if adversary is None else adversary.attack(lambda *a: unet_eps(unet, scheduler, *a), x, t, cases,
                                                           eps_c)
    # 4. one student call: `from` at x_t [the anchors at x_a] [the adversarial prompts at x_t]
    target = esd_target(eps_from, eps_c, eps_null, negative_guidance)
    rows = [(x, t, erase_from)] + ([(xa, ta, anchors)] if anchors is not None else []) + \
        ([(x, t, adv)] if adv is not None else [])
    preds = unet_eps(unet, scheduler, torch.cat([r[0] for r in rows]), batch_timesteps([r[1] for r in rows], batch),
                     Cond.cat([r[2] for r in rows])).chunk(len(rows))
    # 5. the loss
    loss = masked_mse(preds[0], target)
    if anchors is not None:
        loss = loss + prompts.preserve_weight * masked_mse(preds[1], eps[n])
    if adv is not None:
        loss = loss + adversary.cfg.weight * masked_mse(preds[-1], target)
    return loss


def twin_loss(rng, st, source, prompts, batch, null_weight=1.0, anchor_source=None, adversary=None,
              negative_guidance=0.0):
    """The concept mapped onto its neutral twin, on the twin's own trajectories (the model-based
    target of Concept Ablation, Kumari et al. 2023), for `batch` rows:

        MSE( student(x0_t, from),  eps(x0_t, twin) - eta * (eps(x0_t, from) - eps(x0_t, twin)) )
      + null_weight * MSE( student(x0_t, ""),  eps(x0_t, "") )
      + preserve_weight * MSE( student(x_a, a),  eps(x_a, a) )         with --preserve rows
      + robust_weight * MSE( student(x0_t, adv),  eps(x0_t, twin) )    with --robust

    x0_t is a state of the twin's guided trajectory (`source` samples or streams the twins: a stream
    moves on with this very call's eps(twin) and eps("")), so the student learns to follow the
    twin's trajectory from pure noise on: sampled with `from`, the erased model paints what the base
    model paints for the twin, seed for seed. The null term keeps the unconditional branch of
    classifier-free guidance, which esd-x's query and output projections would otherwise move. eta
    (negative_guidance; 0: the twin itself) also steers off what the concept still adds to the twin
    there, at the cost of one more teacher row. `prompts`
    is an EsdPrompts with `twin`; an `adversary` pulls the student at x0_t toward eps(x0_t, from)
    (one more teacher row), and the student is mapped onto the twin from the adversarial prompt too."""
    unet, scheduler = st.denoiser, st.pipe.scheduler
    # 1. draw x0_t, states of the twins' trajectories, and each row's case [and the anchors' x_a]
    x, t, cases = source.draw(source.pick_step(rng), batch)
    erase_from, twin, null = prompts.erase_from[cases], prompts.twin[cases], prompts.null.repeat(batch)
    xa, ta, anchors = draw_anchors(rng, prompts, anchor_source, x, t, batch)
    # 2. one batched teacher call: eps(twin), eps("") at x0_t [eps(from) there, for eta > 0 or the inner
    #    attack] [eps(a) at x_a, and eps("") there when the anchors' trajectories stream]
    push = negative_guidance != 0 or adversary is not None
    calls = [(twin, x, t), (null, x, t)] + ([(erase_from, x, t)] if push else [])
    n = len(calls)
    if anchors is not None:
        calls.append((anchors, xa, ta))
        if anchor_source is not None and anchor_source.streams:
            calls.append((null, xa, ta))
    eps = teacher_eps(st.teacher_unet, scheduler, [c[1] for c in calls], [c[2] for c in calls],
                      [c[0] for c in calls], st.teacher_params)
    eps_twin, eps_null = eps[0], eps[1]
    # 3. advance the sources: the twins' trajectories take their guided step on these predictions
    source.advance(eps_twin, eps_null)
    if anchor_source is not None:
        anchor_source.advance(eps[n], eps[-1])
    # 3b. --robust: the inner attack finds prompts that make the student paint `from` at x0_t again
    adv = None if adversary is None else adversary.attack(lambda *a: unet_eps(unet, scheduler, *a), x, t, cases,
                                                           eps[2])
    # 4. one student call: `from` and "" at x0_t [the anchors at x_a] [the adversarial prompts at x0_t]
    rows = [(x, t, erase_from)] + ([(x, t, null)] if null_weight else []) + \
        ([(xa, ta, anchors)] if anchors is not None else []) + ([(x, t, adv)] if adv is not None else [])
    preds = unet_eps(unet, scheduler, torch.cat([r[0] for r in rows]), batch_timesteps([r[1] for r in rows], batch),
                     Cond.cat([r[2] for r in rows])).chunk(len(rows))
    # 5. the loss
    target = eps_twin - negative_guidance * (eps[2] - eps_twin) if negative_guidance else eps_twin
    loss = masked_mse(preds[0], target)
    if null_weight:
        loss = loss + null_weight * masked_mse(preds[1], eps_null)
    if anchors is not None:
        loss = loss + prompts.preserve_weight * masked_mse(preds[1 + bool(null_weight)], eps[n])
    if adv is not None:
        loss = loss + adversary.cfg.weight * masked_mse(preds[-1], target)
    return loss


def grid_loss_terms(pred_c, target, eps_c, mask, outside_weight, pred_r=None, eps_r=None, retain_weight=0.0,
                    row_weights=None, retain_mask=None):
    """Grid erasure's masked terms: inside the mask the student (concept prompt) is steered onto
    `target`; outside it, it keeps the frozen concept prediction eps_c (weight `outside_weight`); a
    retain prompt keeps the frozen prediction everywhere, or only inside `retain_mask` (its rows' masks,
    --retain_region mask) when given (weight `retain_weight`, times each row's `row_weights` when given:
    --preserve_weight for anchors). Returns (loss, parts)."""
    inside = masked_mse(pred_c, target, mask)
    outside = masked_mse(pred_c, eps_c, 1 - mask) if outside_weight else pred_c.new_zeros(())
    if not retain_weight or pred_r is None:
        retain = pred_c.new_zeros(())
    elif retain_mask is not None:                    # each row's mean over its own mask
        keep = retain_mask.to(pred_r.dtype).expand_as(pred_r)
        per_row = (((pred_r.float() - eps_r.float()) ** 2 * keep).flatten(1).sum(1)
                   / keep.flatten(1).sum(1).clamp(min=1))
        retain = (per_row * (1 if row_weights is None else row_weights.to(per_row))).mean()
    elif row_weights is None:
        retain = masked_mse(pred_r, eps_r)
    else:
        per_row = ((pred_r.float() - eps_r.float()) ** 2).flatten(1).mean(1)
        retain = (per_row * row_weights.to(per_row)).mean()
    loss = inside + outside_weight * outside + retain_weight * retain
    return loss, {"inside": inside.item(), "outside": outside.item(), "retain": retain.item()}


def grid_erasure_loss(rng, st, cases: GridCases, sources: GridSources, batch, negative_guidance, outside_weight,
                      retain_weight, adversary=None, direction="null", target="esd", null_weight=1.0,
                      retain_region="image"):
    """Grid erasure's loss for one iteration, on `batch` cases (prompt variation p, its neutral twin
    p0, mask M, retain prompt r):

          inside M:  MSE( student(x_t, p),  eps(x_t, p0) - eta * (eps(x_t, p) - eps(x_t, "")) )
                     (direction "twin": eta * (eps(x_t, p) - eps(x_t, p0)), what the concept adds to p0)
        + outside_weight * outside M:  MSE( student(x_t, p),  eps(x_t, p) )
        + retain_weight * MSE( student(x_t^r, r),  eps(x_t^r, r) )
                     (retain_region "mask": inside the retain row's own mask only, where the picture is painted)

    With target "twin", x_t is a state of the twin p0's own inpainting trajectory, the target inside M
    is eps(x_t, p0) - eta * (eps(x_t, p) - eps(x_t, p0)) (eta 0: the twin itself, Concept Ablation's
    target), and null_weight * MSE( student(x_t, ""), eps(x_t, "") ) keeps the unconditional branch.
    The teacher call is the same: eps(p0) and eps("") are in it, and they move the twins' stream on.

    x_t is an inpainting state of M with prompt p; x_t^r the same for r, from its own trajectories
    (`sources.retain`, --retain_xt own) or x_t itself. Each case's mask M is `sources.inpainting.mask`,
    the one the 9-channel UNet is given too. With an `adversary` (--robust), its inner attack first finds
    adversarial prompts for p at x_t; the student prompted with them gets the inside and outside
    terms too (weight adversary.cfg.weight). Returns (loss, parts), parts the terms' values."""
    unet, scheduler = st.denoiser, st.pipe.scheduler
    source, retain_source, inpainting = sources.concept, sources.retain, sources.inpainting
    # 1. draw x_t of B cases at a step k, and x_t^r of their retain prompts at the same k
    k = source.pick_step(rng)
    x, t, c = source.draw(k, batch)
    v, mask = cases.v_of[c], inpainting.mask[c]
    if retain_source is not None:
        xr, tr, cr = retain_source.draw(k, batch)
        r = cases.r_of[cr]
    else:
        xr, tr, cr, r = x, t, c, torch.as_tensor(rng.integers(0, len(cases.retain), batch))
    nine = inpainting.masked is not None               # a 9-channel UNet also sees mask and masked image
    extra, extra_r = (inpainting[c].extra(), inpainting[cr].extra()) if nine else (None, None)
    # 2. one teacher call: eps(p0), eps(p), eps("") at x_t; eps(r) at x_t^r, and eps("") there too when
    #    the retain trajectories stream (they need it to move on)
    retain_null = retain_source is not None and retain_source.streams
    n = 4 + retain_null
    eps = teacher_eps(st.teacher_unet, scheduler, [x, x, x, xr, xr][:n], [t, t, t, tr, tr][:n],
                      [cases.neutral[v], cases.concept[v], cases.null, cases.retain_c[r], cases.null][:n],
                      st.teacher_params, [extra, extra, extra, extra_r, extra_r][:n])
    eps_n, eps_c, eps_null, eps_r = eps[:4]
    # 3. advance the sources (streams: one guided step of each drawn trajectory: p's, or p0's for "twin")
    twin = target == "twin"
    source.advance(eps_n if twin else eps_c, eps_null)
    if retain_null:
        retain_source.advance(eps_r, eps[4])
    # 3b. --robust: the inner attack on the student at x_t (with its mask inputs), toward eps(p)
    adv = None if adversary is None else adversary.attack(
        lambda xa, ta, ca: unet_eps(unet, scheduler, xa, ta, ca, extra=extra), x, t, v, eps_c)
    # 4. one student call on (x_t, p) and (x_t^r, r) [and (x_t, "") for "twin"] [and (x_t, adversarial p)]
    null_row = twin and null_weight > 0
    rows = [(x, t, cases.concept[v], extra), (xr, tr, cases.retain_c[r], extra_r)] + \
        ([(x, t, cases.null.repeat(batch), extra)] if null_row else []) + \
        ([(x, t, adv, extra)] if adv is not None else [])
    preds = unet_eps(unet, scheduler, torch.cat([q[0] for q in rows]), batch_timesteps([q[1] for q in rows], batch),
                     Cond.cat([q[2] for q in rows]),
                     extra=None if extra is None else torch.cat([q[3] for q in rows])).chunk(len(rows))
    # 5. the masked terms
    inside = esd_target(eps_n, eps_c, eps_n if direction == "twin" or twin else eps_null, negative_guidance)
    loss, parts = grid_loss_terms(preds[0], inside, eps_c, mask, outside_weight, preds[1], eps_r,
                                  retain_weight, cases.retain_w[r] if cases.retain_w is not None else None,
                                  inpainting.mask[cr] if retain_region == "mask" else None)
    if null_row:
        parts["null"] = masked_mse(preds[2], eps_null)
        loss = loss + null_weight * parts["null"]
        parts["null"] = parts["null"].item()
    if adv is not None:
        adv_loss, adv_parts = grid_loss_terms(preds[-1], inside, eps_c, mask, outside_weight)
        loss = loss + adversary.cfg.weight * adv_loss
        parts["adversarial"] = adv_parts["inside"]
    return loss, parts
