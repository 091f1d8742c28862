"""The toy art world: its vocabulary (world), procedural images (painter), their classifier, the
tokenizer, the VAE, and the training of the tiny Stable Diffusion on them (train_sd,
train_sd_inpainting). Its quality checks are evaluation code: spatial_erasure.evaluation.toy_model_quality
and toy_inpainting_quality."""
from .painter import render
from .world import ARTISTS, FAMOUS_WORKS, GENERIC_STYLES, NATURE, OBJECTS, PHOTO, STYLES, SUBJECTS

__all__ = ["ARTISTS", "FAMOUS_WORKS", "GENERIC_STYLES", "NATURE", "OBJECTS", "PHOTO", "STYLES", "SUBJECTS", "render"]
