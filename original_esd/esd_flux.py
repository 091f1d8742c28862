r"""ESD for Flux.1 (dev, schnell; flow matching): the ESD target in velocity space, x_t from the
model's own flow-matching Euler sampler.

    python original_esd/esd_flux.py --erase_concept "Vincent van Gogh" --train_method esd-x-strict \
        --mixed_precision bf16 --resolution 512 --device cuda

Default --base_model is black-forest-labs/FLUX.1-dev (needs the hub and a GPU). Flux-dev is
guidance-distilled: x_t is sampled with its guidance input at 3.5 on the conditional branch alone
(--guidance_scale 1), and the loss calls it with guidance 1, its "" prediction standing for the
unconditional branch (spatial_erasure.families.flux). Train methods: esd-x (every Linear of every
attention), esd-x-strict (the double-stream blocks' add_k_proj / add_v_proj), eraseanything
(add_k_proj + add_q_proj), esd-x-text, esd-u, esd-all.
"""
from spatial_erasure.esd import FLUX_DEFAULTS, check_script, main
from spatial_erasure.esd import parse_args as esd_args


def parse_args(argv=None):
    return check_script(esd_args(argv, FLUX_DEFAULTS, __doc__), "flux")   # a Flux pipeline, else one line


if __name__ == "__main__":
    main(parse_args())
