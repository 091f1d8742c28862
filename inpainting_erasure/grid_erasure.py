"""Grid-masked concept erasure (inpainting erasure). See `--help`; presets basic/efficient/scaled.

    python inpainting_erasure/grid_erasure.py --preset basic
    python inpainting_erasure/grid_erasure.py --base_model models/toyart-sd-inpainting --preset scaled
"""
from spatial_erasure.grid_erasure import main, parse_args

if __name__ == "__main__":
    main(parse_args())
