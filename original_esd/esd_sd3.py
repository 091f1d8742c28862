r"""ESD for Stable Diffusion 3 / 3.5 (MMDiT, flow matching): the ESD target in velocity space,
x_t from the model's own flow-matching Euler sampler.

    python original_esd/esd_sd3.py --erase_concept "Vincent van Gogh" --train_method esd-x-strict \
        --mixed_precision bf16 --device cuda

Default --base_model is stabilityai/stable-diffusion-3-medium-diffusers (needs the hub and a GPU).
Train methods for the joint blocks: esd-x (every Linear of their attention), esd-x-strict (the text
stream's add_k_proj / add_v_proj, the analogue of SD's attn2.to_k / to_v), esd-x-text, esd-u, esd-all
(spatial_erasure.families.sd3). The recipes are esd_sd.py's; the key/value penalty and the twin map
have no closed form on these blocks and are off (docs/flow.md).
"""
from spatial_erasure.esd import SD3_DEFAULTS, check_script, main
from spatial_erasure.esd import parse_args as esd_args


def parse_args(argv=None):
    return check_script(esd_args(argv, SD3_DEFAULTS, __doc__), "sd3")   # an SD3 pipeline, else one line


if __name__ == "__main__":
    main(parse_args())
