"""ESD for Stable Diffusion 1.x/2.x (and the bundled toy model, the default --base_model).

    python original_esd/esd_sd.py --erase_concept "Vincent van Gogh"                  # the recommended recipe
    python original_esd/esd_sd.py --erase_concept "Vincent van Gogh" --recipe paper   # the reference ESD
    python original_esd/esd_sd.py --erase_concept "Vincent van Gogh" --base_model CompVis/stable-diffusion-v1-4

Writes models/esd-{concept}-from-{from}-{method}[-{recipe}].safetensors (changed tensors only; the
recipe is named unless paper) and a JSON log. The recommended recipe maps the concept onto its
neutral twin (models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x-recommended.safetensors); the
paper recipe on the toy model (lr 7e-4, negative guidance 4, 200 iterations, x_t sampled) gives the
bundled models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors.
"""
from spatial_erasure.esd import SD_DEFAULTS, check_script, main
from spatial_erasure.esd import parse_args as esd_args


def parse_args(argv=None):
    return check_script(esd_args(argv, SD_DEFAULTS, __doc__), "sd")   # an SD pipeline, else one line


if __name__ == "__main__":
    main(parse_args())
