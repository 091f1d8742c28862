"""ESD for Stable Diffusion 1.x/2.x (and the bundled toy model, the default --base_model).

    python original_esd/esd_sd.py --erase_concept "Vincent van Gogh" --train_method esd-x
    python original_esd/esd_sd.py --erase_concept "Vincent van Gogh" --base_model CompVis/stable-diffusion-v1-4

Writes models/esd-{concept}-from-{from}-{method}.safetensors (changed tensors only) and a JSON log.
On the toy model the defaults (lr 7e-4, negative guidance 4, 200 iterations, x_t sampled) are those
of the bundled models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors.
"""
from spatial_erasure.esd import SD_DEFAULTS, main
from spatial_erasure.esd import parse_args as esd_args


def parse_args(argv=None):
    return esd_args(argv, SD_DEFAULTS, __doc__)


if __name__ == "__main__":
    main(parse_args())
