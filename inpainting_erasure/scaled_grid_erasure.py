"""The scaled preset of grid erasure (100 prompts x 500 iterations): the documented entry point.

    python inpainting_erasure/scaled_grid_erasure.py [any grid_erasure.py flag]
"""
from spatial_erasure.grid_erasure import main, parse_args

if __name__ == "__main__":
    main(parse_args(preset_default="scaled"))
