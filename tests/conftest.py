import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # never wait on the network in tests


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory):
    """Tiny random-weight pipelines of every kind, saved as real diffusers folders."""
    from spatial_erasure.testing import KINDS, save_tiny_pipeline
    root = tmp_path_factory.mktemp("tiny")
    return {k: save_tiny_pipeline(k, str(root / k)) for k in KINDS}
