"""The scaled preset of grid erasure (100 prompts x 10 masks; 1000 iterations with the recommended recipe,
500 with the paper one): the documented entry point.

    python inpainting_erasure/scaled_grid_erasure.py [any grid_erasure.py flag]
    python inpainting_erasure/scaled_grid_erasure.py --base_model models/toyart-sd-inpainting --recipe paper
"""
from spatial_erasure.grid_erasure import main, parse_args

if __name__ == "__main__":
    main(parse_args(preset_default="scaled"))
