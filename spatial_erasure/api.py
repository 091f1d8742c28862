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
import argparse
import difflib
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
        return erasure_file.apply_tensors(pipe, self.tensors, self.metadata, "this Erasure",
                                          allow_unverified=allow_unverified, fix=erasure_file.API_FIX)

    @contextmanager
    def applied(self, pipe):
        """`with erasure.applied(pipe):` the pipeline erased inside the block, restored after it."""
        with erasure_file.erased_by(pipe, self.tensors, self.metadata, "this Erasure",
                                    fix=erasure_file.API_FIX) as meta:
            yield meta

    def export(self, fmt, output, **options):
        """spatial_erasure.export.export of this erasure (fmt "diffusers", "kohya" or "pipeline")."""
        from .export import export
        with self._file() as path:
            return export(path, fmt, str(output), **options)

    def __repr__(self):
        return (f"Erasure({self.metadata.get('method')} of {self.metadata.get('concept')!r} on "
                f"{self.metadata.get('base_model')}, {len(self.tensors)} tensors)")


OWN = ("erase_concept", "concept", "base_model", "output")     # erase()'s own arguments, not keywords


def flags(parser, options):
    """erase()'s keyword arguments as the trainer's command line (`parser`'s flags): True -> --name,
    False -> --no-name (or nothing for a plain switch), a list -> several values, None -> left out,
    anything else -> --name value. InputError in the caller's terms, before argparse sees them, for a
    keyword the trainer has no flag for (with the nearest one), a value of the wrong type or not
    among the flag's choices: nothing is printed, no SystemExit."""
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    argv = []
    for name, value in options.items():
        if name in OWN:
            raise InputError(f"erase() takes {name} as its own argument (erase(concept, base_model=..., output=...)), "
                             "not as a keyword")
        if name not in actions:
            near = difflib.get_close_matches(name, list(actions), n=1)
            raise InputError(f"erase() has no keyword {name!r}" + (f"; did you mean {near[0]!r}?" if near else
                             "; its keywords are the trainer's flags without the dashes (--help lists them)"))
        action, flag = actions[name], actions[name].option_strings[0]
        if value is None:
            continue
        if action.nargs == 0:                      # a switch
            if not isinstance(value, bool):
                raise InputError(f"erase({name}={value!r}): pass True or False")
            if value:
                argv.append(flag)
            elif isinstance(action, argparse.BooleanOptionalAction):
                argv.append("--no-" + flag[2:])
            continue
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        for v in values:
            try:
                parsed = action.type(str(v)) if action.type else str(v)
            except (TypeError, ValueError):
                raise InputError(f"erase({name}={value!r}): not a valid {action.type.__name__}") from None
            if action.choices is not None and parsed not in action.choices:
                raise InputError(f"erase({name}={value!r}): choose one of {', '.join(map(str, action.choices))}")
        argv += [flag, *map(str, values)]
    return argv


def erase(concept, base_model=TOY_MODEL, method="esd", output=None, **options):
    """Train an erasure of `concept` on `base_model` (hub id or folder; default: the bundled toy model)
    with `method` ("esd" or "grid"), the recommended recipe unless `recipe=` says otherwise, the
    defaults of the script of base_model's family (esd_sd3.py's for an SD3 folder), and any
    other flag of that trainer as a keyword; returns the Erasure. The file is written to `output` (a
    .safetensors path; an existing file only with overwrite=True) if given, else to a temporary folder
    that is removed. Bad input raises InputError in one line, with nothing printed and nothing written."""
    if method not in METHODS:
        raise InputError(f"method {method!r} is not one of {', '.join(METHODS)}; pass method='esd' or 'grid'")
    if method == "esd":
        from . import esd as trainer
        argv, defaults = ["--erase_concept", concept], {"defaults": trainer.defaults_for(base_model)}
    else:
        from . import grid_erasure as trainer
        argv, defaults = ["--concept", concept], {}
    argv += flags(trainer.build_parser(**defaults), options)
    with tempfile.TemporaryDirectory() as folder:
        out = str(output) if output else os.path.join(folder, "erasure.safetensors")
        try:                                       # the trainer's own one-line checks, as exceptions here
            trainer.main(trainer.parse_args(argv + ["--base_model", str(base_model), "--output", out], **defaults))
        except SystemExit as e:
            raise InputError(f"erase(): {str(e.code).removeprefix('error: ')}") from None
        return Erasure.load(out)
