r"""ESD for Stable Diffusion XL (pooled text embeddings and add_time_ids on every UNet call).

    python original_esd/esd_sdxl.py --erase_concept "Vincent van Gogh" --train_method esd-x \
        --mixed_precision bf16 --device cuda

Default --base_model is stabilityai/stable-diffusion-xl-base-1.0 (needs the hub and a GPU); the
recipes are esd_sd.py's (--recipe paper: the reference's lr 2e-4 and negative guidance 1).
"""
from spatial_erasure.esd import SDXL_DEFAULTS, check_script, main
from spatial_erasure.esd import parse_args as esd_args


def parse_args(argv=None):
    return check_script(esd_args(argv, SDXL_DEFAULTS, __doc__), "sdxl")   # an SDXL pipeline, else one line


if __name__ == "__main__":
    main(parse_args())
