"""Teacher predictions (one batched call with the frozen weights), ESD targets, masked losses."""
import torch
import torch.nn.functional as F

from .prompts import Cond
from .trajectories import unet_eps


@torch.no_grad()
def teacher_eps(unet, scheduler, x, t, conds, params):
    """Frozen-model noise predictions for each Cond in `conds` at (x, t), in ONE UNet call:
    batch (len(conds) * B). `params` holds the original values of the trained tensors."""
    b = len(x)
    out = unet_eps(unet, scheduler, x.repeat(len(conds), 1, 1, 1), t, Cond.cat([c.repeat(b) if len(c) == 1 else c
                                                                                for c in conds]), params)
    return out.chunk(len(conds))


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
