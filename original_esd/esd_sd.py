"""ESD for Stable Diffusion 1.x/2.x (and the bundled toy model, the default --base_model).

    python original_esd/esd_sd.py --erase_concept "Vincent van Gogh" --train_method esd-x
    python original_esd/esd_sd.py --erase_concept "Vincent van Gogh" --base_model CompVis/stable-diffusion-v1-4

Writes models/esd-{concept}-from-{from}-{method}.safetensors (changed tensors only) and a JSON log.
"""
from spatial_erasure.esd import SD_DEFAULTS, build_parser, main


def parse_args(argv=None):
    return build_parser(SD_DEFAULTS, __doc__).parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
