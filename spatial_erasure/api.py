"""The Python API: erase a concept and use the erasure without the command line.

    from spatial_erasure import Erasure, erase
    erasure = erase("Vincent van Gogh", iterations=50)            # ESD, the recommended recipe, toy model
    with erasure.applied(pipe):                                    # the pipeline, erased, inside the block
        image = pipe("a painting of a house by Vincent van Gogh").images[0]
    erasure.save("vangogh.safetensors")
    Erasure.load("models/esd-...safetensors").export("diffusers", "exports/lora", rank=8)

`erase` runs the same trainer as `original_esd/esd_sd.py` (method "esd") or the grid trainer of
`inpainting_erasure/` (method "grid"): each keyword is that script's flag (`iterations=50` is
`--iterations 50`, `xt_source="stream"` is `--xt_source stream`, `robust=True` is `--robust`), so
every recipe, default and check of the command line holds here too, and the erasure is the same
file the script would write. `Erasure` is the file's tensors and metadata: `applied(pipe)` (a
context manager that restores the pipeline), `apply(pipe)` (permanent), `save`, `load`, `export`.
"""
import os
import tempfile
from contextlib import contextmanager

from . import erasure_file
from .errors import InputError
from .models import TOY_MODEL

METHODS = {"esd": "ESD on a text-to-image UNet (spatial_erasure.esd)",
           "grid": "grid-masked inpainting erasure (spatial_erasure.grid_erasure)"}


class Erasure:
    """An erasure: the trained tensors ({UNet parameter name: fp32 tensor}) and the metadata the
    trainer recorded (base model and its fingerprint, method, concept, every setting)."""

    def __init__(self, tensors, metadata):
        self.tensors, self.metadata = tensors, metadata

    @classmethod
    def load(cls, path):
        """Read an erasure file (safetensors only; checked: float, finite, an erasure's metadata)."""
        return cls(*erasure_file.read_erasure(str(path)))

    def save(self, path):
        """Write it as an erasure file (atomically)."""
        erasure_file.save_erasure(str(path), self.tensors, self.metadata)
        return str(path)

    @contextmanager
    def _file(self):
        with tempfile.TemporaryDirectory() as folder:
            yield self.save(os.path.join(folder, "erasure.safetensors"))

    def apply(self, pipe, allow_unverified=False):
        """Load the tensors into pipe.unet for good (refused for another base model)."""
        with self._file() as path:
            return erasure_file.apply_erasure(pipe, path, allow_unverified=allow_unverified)

    @contextmanager
    def applied(self, pipe):
        """`with erasure.applied(pipe):` the pipeline erased inside the block, restored after it."""
        with self._file() as path, erasure_file.erased(pipe, path) as meta:
            yield meta

    def export(self, fmt, output, **options):
        """spatial_erasure.export.export of this erasure (fmt "diffusers", "kohya" or "pipeline")."""
        from .export import export
        with self._file() as path:
            return export(path, fmt, str(output), **options)

    def __repr__(self):
        return (f"Erasure({self.metadata.get('method')} of {self.metadata.get('concept')!r} on "
                f"{self.metadata.get('base_model')}, {len(self.tensors)} tensors)")


def flags(options):
    """Keyword arguments as the trainer's command-line flags: True -> --name, False -> --no-name
    (switches), a list -> several values, anything else -> --name value."""
    argv = []
    for name, value in options.items():
        if value is None:
            continue
        if value is True:
            argv.append(f"--{name}")
        elif value is False:
            argv.append(f"--no-{name}")
        elif isinstance(value, (list, tuple)):
            argv += [f"--{name}", *map(str, value)]
        else:
            argv += [f"--{name}", str(value)]
    return argv


def erase(concept, base_model=TOY_MODEL, method="esd", output=None, **options):
    """Train an erasure of `concept` on `base_model` (hub id or folder; default: the bundled toy model)
    with `method` ("esd" or "grid"), the recommended recipe unless `recipe=` says otherwise, and any
    other flag of that trainer as a keyword; returns the Erasure. The file is written to `output` (a
    .safetensors path) if given, else to a temporary folder that is removed."""
    if method not in METHODS:
        raise InputError(f"method {method!r} is not one of {', '.join(METHODS)}; pass method='esd' or 'grid'")
    if method == "esd":
        from . import esd as trainer
        argv = ["--erase_concept", concept]
    else:
        from . import grid_erasure as trainer
        argv = ["--concept", concept]
    with tempfile.TemporaryDirectory() as folder:
        out = str(output) if output else os.path.join(folder, "erasure.safetensors")
        try:                                       # the script's one-line errors, as exceptions here
            trainer.main(trainer.parse_args(argv + ["--base_model", str(base_model), "--output", out]
                                            + flags(options)))
        except SystemExit as e:
            raise InputError(str(e.code).removeprefix("error: ") if isinstance(e.code, str) else
                             f"the {method} trainer refused its options {options} (see the message above)") from None
        return Erasure.load(out)
