"""What grid erasure trains on, as two records: the cases (prompt variations x masks, retain prompts,
anchors, all encoded) and their sources (inpainting inputs, x_t trajectories).

    cases = grid_cases.build_cases(st, cfg, res, latent)          # GridCases
    sources = grid_cases.build_sources(st, cfg, cases, res, latent)   # GridSources
    loss, parts = objectives.grid_erasure_loss(rng, st, cases, sources, ...)

`grid_cases` builds them; `objectives.grid_erasure_loss` reads them. Each case's mask has one
source: `sources.inpainting.mask` (C, 1, h, w), built from `cases.lat[cases.m_of]`; the loss reads
it there, for its masked terms and, for a 9-channel UNet, as the UNet's mask input.
"""
from dataclasses import dataclass

import torch

from .prompts import Cond
from .trajectories import Inpainting, XtSource


@dataclass
class GridCases:
    """The training cases: every (prompt variation, grid mask) pair, then the whole-image cases."""
    concepts: list          # the erased concepts
    rows: list              # the V prompt variations {case_number, prompt, neutral, evaluation_seed[, concept]}
    concept: Cond           # (V,) each variation's prompt p
    neutral: Cond           # (V,) its neutral twin p0
    null: Cond              # (1,) ""
    retain: list            # the R retain prompts: other artists and styles, then the A anchors (--preserve)
    n_anchors: int          # A
    retain_c: Cond          # (R,)
    pix: torch.Tensor       # (M [+1], 1, res, res) the masks, the whole image last when there are global cases
    lat: torch.Tensor       # (M [+1], 1, h, w) the same at latent size
    names: list             # mask names
    v_of: torch.Tensor      # (C,) each case's variation
    m_of: torch.Tensor      # (C,) its mask
    r_of: torch.Tensor      # (C,) its retain prompt
    n_masks: int            # M, the grid masks
    n_global: int           # whole-image cases
    anchors_c: Cond = None  # every anchor, for the key/value penalty (--preserve_kv)
    retain_w: torch.Tensor = None   # (R,) each retain prompt's row weight (--preserve_weight of anchors; None: all 1)

    def anchor_cases(self):
        """(C,) True where a case's retain prompt is an anchor (--preserve)."""
        return self.r_of >= len(self.retain) - self.n_anchors


@dataclass
class GridSources:
    """Where each case's x_t comes from: its inpainting inputs and the trajectories on them."""
    inpainting: Inpainting  # (C,) source-image latent z0, latent mask [and masked-image latent: 9 channels]
    concept: XtSource       # x_t of each case's prompt p
    retain: XtSource        # x_t of its retain prompt r (--retain_xt own), else None: the retain term uses x_t
    source_seconds: float   # generating the source images
