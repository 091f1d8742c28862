"""The toy art world: procedural images, their classifier, and the tiny Stable Diffusion trained on them."""
from .world import ARTISTS, FAMOUS_WORKS, GENERIC_STYLES, NATURE, OBJECTS, PHOTO, STYLES, SUBJECTS, render
