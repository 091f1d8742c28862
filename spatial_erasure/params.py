"""Deprecated alias, kept only while tests/test_export.py still imports from here: parameter selection
now lives in `selection`, the erasure file in `erasure_file`. Import from those; delete this module
once nothing imports it."""
from .erasure_file import (ErasureMismatch, apply_erasure, erased, latest_erasure, read_erasure,  # noqa: F401
                           recorded_base, save_erasure)
from .selection import TRAIN_METHODS, count, select_parameters  # noqa: F401
