"""The command line every script shares, defined once.

    p = cli.parser(__doc__)
    ... the script's own flags ...
    cli.add_common_args(p, "results/x", "output folder", seed=0)
        # --base_model (hub id or folder; default: the bundled toy model), --seed, --num_inference_steps,
        # --guidance_scale, --device (cuda if available, else cpu; under accelerate, each process's own GPU),
        # --output (the ESD scripts and generate_images.py also take --save_path)

or the flags one at a time (add_model_arg, add_seed_arg, add_sampling_args, add_device_arg, add_output_arg).

The trainers add `add_training_args` (train method, iterations, lr, x_t source, ...) and
`add_runtime_args` (device, precision, memory savers); `model_family` and `fill_defaults` give
both trainers their per-family defaults (toy model, SD, SDXL) for flags left unset. Every script's
main is wrapped in `reports_errors`: an error the user can fix ends the run with one line
`error: ...` that names the fix, exit status 1.
"""
import argparse
import functools
import math
import os
from pathlib import Path

from . import files
from .distributed import check_device, end_processes
from .errors import InputError
from .models import REPO_ROOT, TOY_MODEL, ModelLoadError, architecture
from .prompts import is_toy
from .sampling import REAL_GUIDANCE, REAL_STEPS, TOY_GUIDANCE, TOY_STEPS
from .selection import TRAIN_METHODS, trains_keys_and_values
from .trainer import PRECISIONS, TEACHERS
from .trajectories import XT_SOURCES

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


def add_runtime_args(p):
    """Flags of how (not what) a trainer runs: device, precision, memory savers, teacher form."""
    a = p.add_argument
    add_device_arg(p)
    a("--mixed_precision", default="no", choices=list(PRECISIONS),
      help="frozen weights and compute in this precision; trained tensors stay fp32")
    a("--gradient_checkpointing", action="store_true",
      help="recompute the student's activations in the backward pass (less memory, ~1 more forward)")
    a("--channels_last", action="store_true", help="UNet weights and activations in channels-last memory format")
    a("--compile", action="store_true", help="torch.compile the UNet (GPU; the first iterations compile)")
    a("--teacher", default="originals", choices=list(TEACHERS), help=choices_help(TEACHERS))


def add_training_args(p, iterations, xt_source, bank_size, stream_width, guidance_scale, lr_help, eta_help,
                      batch_help, seed_help):
    """The flags ESD and grid erasure share (a default of None is filled later: by a preset or the
    model family), then the runtime flags."""
    a = p.add_argument
    a("--train_method", default="esd-x", choices=list(TRAIN_METHODS), help=choices_help(TRAIN_METHODS))
    a("--iterations", type=int, default=iterations, help="training iterations" + ("; recipe" * (iterations is None)))
    a("--lr", type=float, help=f"Adam learning rate, constant ({lr_help})")
    a("--negative_guidance", type=float, help=f"eta of the ESD target ({eta_help})")
    a("--num_inference_steps", type=int, default=50, help="scheduler steps that define the grid of steps k")
    a("--guidance_scale", type=float, default=guidance_scale, help="CFG scale when producing x_t")
    a("--batch_size", type=int, default=1, help=batch_help)
    a("--resolution", type=int, default=None, help="image size (default: the model's native size)")
    add_seed_arg(p, 0, seed_help)
    a("--xt_source", default=xt_source, choices=list(XT_SOURCES),
      help=choices_help(XT_SOURCES) + ("; recipe" * (xt_source is None)))
    a("--bank_size", type=int, default=bank_size,
      help="trajectories in the bank of xt_source cache/noise" + ("; preset" * (bank_size is None)))
    a("--stream_width", type=int, default=stream_width,
      help="trajectories kept alive by xt_source stream (at least --batch_size)")
    a("--checkpoint_every", type=int, default=50, help="iterations between resumable checkpoints")
    a("--resume", action=argparse.BooleanOptionalAction, default=True,
      help="resume from a checkpoint of this output if present (only one of the same run: same flags but "
           "--iterations, --lr, --device)")
    a("--restart", action="store_true", help="start over: ignore a checkpoint of this output (it is replaced)")
    add_runtime_args(p)


PRESERVE_KV = 10.0  # --preserve_kv's default: measured on the toy model (docs/results.md#broad-preservation)


def add_preservation_args(p, rows_help):
    """--preserve N (anchor prompts, spatial_erasure.anchors), --preserve_weight (their rows; `rows_help`
    says where they go) and --preserve_kv (the closed-form key/value penalty over them). The defaults
    left unset are filled by `preservation_defaults` (measured: docs/results.md#broad-preservation)."""
    a = p.add_argument
    a("--preserve", type=int, default=None, help="broad preservation: N random anchor prompts "
      "(spatial_erasure.anchors), kept by --preserve_kv and --preserve_weight; 0: off, as the reference ESD; recipe")
    a("--preserve_weight", type=float, default=None, help=f"weight of the anchors' rows: {rows_help} (default: 0 "
      "for one concept, where rows cost other artists, 1 for several, where they keep them)")
    a("--preserve_kv", type=float, default=None, help="weight of the closed-form key/value penalty "
      "(anchors.KeyValuePenalty): the trained attn2.to_k/to_v keep their outputs for every token of the anchors, "
      f"no UNet call (default with --preserve: {PRESERVE_KV:g}; 0: off)")


def preservation_defaults(args, n_concepts):
    """Fill --preserve_weight and --preserve_kv left unset: rows only when several concepts are erased, the
    key/value penalty whenever there are anchors and the train method trains keys and values (both 0
    without --preserve)."""
    if args.preserve_weight is None:
        args.preserve_weight = 1.0 if args.preserve and n_concepts > 1 else 0.0
    if args.preserve_kv is None:
        args.preserve_kv = PRESERVE_KV if args.preserve and trains_keys_and_values(args.train_method) else 0.0
    return args


def add_recipe_arg(p, trainer):
    """--recipe (spatial_erasure.recipes) and the argument group of the method flags it sets, returned."""
    from .recipes import DEFAULT, RECIPES, describe
    m = p.add_argument_group("method", "set by --recipe; a flag given here overrides it")
    m.add_argument("--recipe", default=DEFAULT, choices=list(RECIPES[trainer]), help=describe(trainer))
    return m


def add_robust_args(p):
    """--robust and its inner attack's schedule (spatial_erasure.adversarial)."""
    from .adversarial import AdversaryConfig
    a = p.add_argument
    a("--robust", action=argparse.BooleanOptionalAction, default=None, help="adversarial erasure "
      "(spatial_erasure.adversarial): every --robust_every iterations, --robust_steps steps of a soft-prompt attack "
      "on the student, warm-started, find a prompt that paints the concept again; the student is erased from it "
      "too (SD 1.x/2.x); recipe")
    a("--robust_every", type=int, default=AdversaryConfig.every, help="iterations between inner attacks")
    a("--robust_steps", type=int, default=AdversaryConfig.steps, help="steps of each inner attack")
    a("--robust_tokens", type=int, default=AdversaryConfig.tokens, help="adversarial embeddings before the prompt")
    a("--robust_weight", type=float, default=AdversaryConfig.weight, help="weight of erasing from the adversarial "
      "prompt in the loss")


def check_preservation_args(args):
    """One line naming the fix for inconsistent --preserve / --robust flags."""
    require_positive(args, "robust_every", "robust_steps", "robust_tokens")
    if args.preserve < 0:
        fail(f"--preserve must be 0 (off) or a number of anchor prompts, not {args.preserve}")
    if (args.preserve_weight or 0) < 0 or (args.preserve_kv or 0) < 0:
        fail("--preserve_weight and --preserve_kv must be 0 or more")
    if not args.preserve and (args.preserve_kv or args.preserve_weight):
        fail("--preserve_kv and --preserve_weight weigh anchor prompts: pass --preserve N (e.g. 200) too")


def require_positive(args, *names):
    """One line naming the fix for a count flag below 1 (0 iterations would write a file that changes nothing)."""
    for name in names:
        value = getattr(args, name)
        if value < 1:
            fail(f"--{name} must be at least 1, got {value}; pass --{name} 1 or more")


def check_training_args(args):
    """One line naming the fix for trainer flags that would fail or mislead later: run before any
    model loads (lr, device, batch size against the stream width)."""
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        fail(f"--lr must be a finite number above 0, got {args.lr}; pass e.g. --lr 1e-4 (or leave it to the recipe)")
    try:
        check_device(args.device)
    except InputError as e:
        fail(str(e))
    if args.xt_source == "stream" and args.batch_size > args.stream_width:
        fail(f"--batch_size {args.batch_size} draws more trajectories per iteration than --stream_width "
             f"{args.stream_width} keeps alive; pass --stream_width {args.batch_size} or more")


def check_output(path, flag="--output", folder=False):
    """One line naming the fix when `path` cannot be written (files.check_output), before any work."""
    try:
        files.check_output(path, flag, folder)
    except InputError as e:
        fail(str(e))


def model_family(pipe):
    """The key of a trainer's per-family defaults: 'toy' (the bundled toy world's models), 'sdxl' or 'sd'."""
    if is_toy(pipe):
        return "toy"
    return "sdxl" if architecture(pipe.unet).startswith("sdxl") else "sd"


def fill_defaults(args, defaults):
    """Set every flag in `defaults` that was left at None (not given) to its default; returns args."""
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


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
