"""spatial_erasure: concept erasure for Stable Diffusion, with spatial control.

Modules: models (load_pipeline), checkpoint (resumable safetensors state), sampling (seeded
generation), distributed (generation split across `accelerate launch` processes), reports
(figures, tables), testing (tiny pipelines), toyart (the bundled toy world).
"""
import os

# diffusers imports transformers' image processors, which warn on every start that torchvision
# (not needed here) is absent; users can still ask for warnings with TRANSFORMERS_VERBOSITY=warning.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

__version__ = "0.1.0"
