"""The command line every script shares, defined once.

    p = cli.parser(__doc__)
    ... the script's own flags ...
    cli.add_common_args(p, "results/x", "output folder", seed=0)
        # --base_model (hub id or folder; default: the bundled toy model), --seed, --num_inference_steps,
        # --guidance_scale, --device (cuda if available, else cpu; under accelerate, each process's own GPU),
        # --output (the ESD scripts and generate_images.py also take --save_path)

or the flags one at a time (add_model_arg, add_seed_arg, add_sampling_args, add_device_arg, add_output_arg).

The trainers' own flags (train method, iterations, lr, x_t source, precision, recipe, ...) are in
`training_flags`. Every script's main is
wrapped in `reports_errors`: an error the user can fix ends the run with one line `error: ...`
that names the fix, exit status 1.
"""
import argparse
import functools
import os
from pathlib import Path

from . import files
from .distributed import end_processes
from .errors import InputError
from .models import REPO_ROOT, TOY_MODEL, ModelLoadError
from .sampling import REAL_GUIDANCE, REAL_STEPS, TOY_GUIDANCE, TOY_STEPS


TOY_MODEL_TEXT = "the bundled toy model, models/toyart-sd"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The docstring's layout kept; a flag's help ends with its default unless the help already says
    it or there is none (None, or False for a switch)."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = not (action.default is None or action.default is False or action.default == argparse.SUPPRESS)
        if action.option_strings and "default" not in text and shown:
            text += " (default: %(default)s)"
        return text


def parser(description):
    """An ArgumentParser showing the script's docstring as written and every flag's default."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def choices_help(table):
    """'key: description; ...' for a flag whose choices are the keys of `table` (README, --help and code agree)."""
    return "; ".join(f"{k}: {v[0] if isinstance(v, tuple) else v}" for k, v in table.items())


def add_model_arg(p, default=TOY_MODEL, help="hub id or local pipeline folder"):
    """--base_model; a bundled model is shown by its path in the repository, not this machine's absolute path."""
    shown = default
    if default == TOY_MODEL:
        shown = TOY_MODEL_TEXT
    elif default is not None and os.path.isabs(default) and Path(default).is_relative_to(REPO_ROOT):
        shown = Path(default).relative_to(REPO_ROOT).as_posix()
    p.add_argument("--base_model", default=default, help=help if shown is None else f"{help} (default: {shown})")


def add_device_arg(p):
    """--device, resolved by distributed.process_device: cuda if available, else cpu; under
    `accelerate launch` "cuda" (or nothing) is each process's own GPU."""
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu; under "
                                                  "accelerate launch, each process's own GPU)")


def add_seed_arg(p, default=0, help="seed"):
    p.add_argument("--seed", type=int, default=default, help=help)


def add_sampling_args(p, steps=TOY_STEPS, guidance=TOY_GUIDANCE, steps_help="sampling steps",
                      guidance_help="classifier-free guidance scale"):
    """--num_inference_steps and --guidance_scale; a default of None means the model family's
    (toy model or real SD, sampling.sampling_defaults)."""
    p.add_argument("--num_inference_steps", type=int, default=steps, help=steps_help if steps is not None else
                   f"{steps_help} (default: toy model {TOY_STEPS}, real SD {REAL_STEPS})")
    p.add_argument("--guidance_scale", type=float, default=guidance, help=guidance_help if guidance is not None else
                   f"{guidance_help} (default: toy model {TOY_GUIDANCE}, real SD {REAL_GUIDANCE})")


def add_output_arg(p, default, help, save_path_alias=False):
    """--output, the one name of every script's output; the ESD scripts and generate_images.py also
    accept --save_path, the reference ESD repository's name for it."""
    names = ["--output", "--save_path"] if save_path_alias else ["--output"]
    p.add_argument(*names, dest="output", default=default, help=help)


def add_common_args(p, output, output_help, model=TOY_MODEL, model_help="hub id or local pipeline folder", seed=None,
                    seed_help="first seed", steps=TOY_STEPS, guidance=TOY_GUIDANCE,
                    guidance_help="classifier-free guidance scale", save_path_alias=False):
    """The shared flags of a script that generates images, in one call: --base_model, --seed (unless
    seed is None: the script has none), --num_inference_steps, --guidance_scale, --device, --output."""
    add_model_arg(p, model, model_help)
    if seed is not None:
        add_seed_arg(p, seed, seed_help)
    add_sampling_args(p, steps, guidance, guidance_help=guidance_help)
    add_device_arg(p)
    add_output_arg(p, output, output_help, save_path_alias)


def require_positive(settings, *names):
    """One line naming the fix for a count flag below 1 (0 iterations would write a file that changes nothing);
    `settings`: {flag: value}, e.g. vars(args) or a config's settings()."""
    for name in names:
        value = settings[name]
        if value is not None and value < 1:                 # None: left to the recipe and the model family
            fail(f"--{name} must be at least 1, got {value}; pass --{name} 1 or more")


def check_output(path, flag="--output", folder=False):
    """One line naming the fix when `path` cannot be written (files.check_output), before any work."""
    try:
        files.check_output(path, flag, folder)
    except InputError as e:
        fail(str(e))


def fail(message):
    """End the run with one line `error: MESSAGE` on stderr and exit status 1; the message names the fix."""
    raise SystemExit(f"error: {message}")


def reports_errors(main):
    """Decorate a script's main(args): an InputError (bad file, flag, prompt CSV, mask, erasure file)
    or ModelLoadError ends it with one line `error: ...` (exit status 1), not a traceback; under
    `accelerate launch` a finished main ends the process group (distributed.end_processes)."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            status = main(*args, **kwargs)
            end_processes()
            return status
        except (InputError, ModelLoadError) as e:
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            fail(message.removeprefix("error: "))
        finally:
            files.release_locks()
    return run
