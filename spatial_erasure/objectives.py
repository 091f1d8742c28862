"""Teacher predictions (one batched call with the frozen weights), ESD targets, masked losses."""
import torch
import torch.nn.functional as F

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


def grid_erasure_loss(pred_c, target, eps_c, mask, outside_weight, pred_r=None, eps_r=None, retain_weight=0.0):
    """Inpainting erasure: inside the mask the student (concept prompt) is steered onto `target`;
    outside it, it keeps the frozen concept prediction eps_c (weight `outside_weight`); a retain
    prompt keeps the frozen prediction everywhere (weight `retain_weight`). Returns (loss, parts)."""
    inside = masked_mse(pred_c, target, mask)
    outside = masked_mse(pred_c, eps_c, 1 - mask) if outside_weight else pred_c.new_zeros(())
    retain = masked_mse(pred_r, eps_r) if retain_weight and pred_r is not None else pred_c.new_zeros(())
    loss = inside + outside_weight * outside + retain_weight * retain
    return loss, {"inside": inside.item(), "outside": outside.item(), "retain": retain.item()}
