"""The flags of the two trainers (ESD and grid erasure), defined once: what they train and how,
preservation, robustness, the recipe, and the checks that run before any model loads.

    p = cli.parser(__doc__)
    training_flags.add_recipe_arg(p, "esd")
    training_flags.add_training_args(p, iterations=None, xt_source=None, ...)   # then add_runtime_args
    flags = vars(training_flags.parse(p, argv))           # --config's settings as defaults
    cfg = EsdConfig.of(recipes.resolve(flags, "esd"))     # typed; the checks below take the config
    training_flags.check_training_args(cfg)

`model_family(pipe)` keys the per-family defaults (toy model, SD, SDXL). The generic flags every
script shares (model, seed, sampling, device, output) and the one-line error handling are in `cli`.
"""
import argparse
import difflib
import json
import math
from dataclasses import replace

from . import cli, files, recipes, trainer
from .configs import TrainingConfig
from .distributed import check_device
from .errors import InputError
from .families import declared_family, family_of
from .prompts import is_toy
from .selection import TRAIN_METHODS, trains_keys_and_values
from .trainer import PRECISIONS, TEACHERS
from .trajectories import XT_SOURCES


def add_runtime_args(p):
    """Flags of how (not what) a trainer runs: device, precision, memory savers, teacher form."""
    a = p.add_argument
    cli.add_device_arg(p)
    a("--mixed_precision", default="no", choices=list(PRECISIONS),
      help="frozen weights and compute in this precision; trained tensors stay fp32")
    a("--gradient_checkpointing", action="store_true",
      help="recompute the student's activations in the backward pass (less memory, ~1 more forward)")
    a("--channels_last", action="store_true", help="UNet weights and activations in channels-last memory format")
    a("--compile", action="store_true", help="torch.compile the UNet (GPU; the first iterations compile)")
    a("--teacher", default="originals", choices=list(TEACHERS), help=cli.choices_help(TEACHERS))


def add_training_args(p, iterations, xt_source, bank_size, stream_width, guidance_scale, lr_help, eta_help,
                      batch_help, seed_help, train_method="esd-x"):
    """The training flags ESD and grid erasure share (a default of None is filled later: by a preset
    or the model family); `p` is a parser or an argument group. The runtime flags are add_runtime_args."""
    a = p.add_argument
    a("--train_method", default=train_method, choices=list(TRAIN_METHODS),
      help=cli.choices_help(TRAIN_METHODS) + f" (default: {train_method})")
    a("--iterations", type=int, default=iterations, help="training iterations" + ("; recipe" * (iterations is None)))
    a("--lr", type=float, help=f"Adam learning rate, constant ({lr_help})")
    a("--negative_guidance", type=float, help=f"eta of the ESD target ({eta_help})")
    a("--num_inference_steps", type=int, default=50, help="scheduler steps that define the grid of steps k")
    a("--guidance_scale", type=float, default=guidance_scale, help="CFG scale when producing x_t")
    a("--batch_size", type=int, default=1, help=batch_help)
    a("--resolution", type=int, default=None, help="image size (default: the model's native size)")
    cli.add_seed_arg(p, 0, seed_help)
    a("--xt_source", default=xt_source, choices=list(XT_SOURCES),
      help=cli.choices_help(XT_SOURCES) + ("; recipe" * (xt_source is None)))
    a("--bank_size", type=int, default=bank_size,
      help="trajectories in the bank of xt_source cache/noise" + ("; preset" * (bank_size is None)))
    a("--stream_width", type=int, default=stream_width,
      help="trajectories kept alive by xt_source stream (at least --batch_size)")
    a("--checkpoint_every", type=int, default=50, help="iterations between resumable checkpoints; 0: none")
    a("--resume", action=argparse.BooleanOptionalAction, default=True,
      help="resume from a checkpoint of this output if present (only one of the same run: same flags but "
           "--iterations, --lr, --device)")
    a("--restart", action="store_true", help="start over: ignore a checkpoint of this output (it is replaced)")
    a("--overwrite", action="store_true", help="replace a finished erasure file at the output (without it, an existing "
      "one is never replaced: the run stops before any work)")


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
      "(anchors.KeyValuePenalty): the trained text key/value projections keep their outputs for every token of "
      f"the anchors, no UNet call on SD/SDXL (default with --preserve: {PRESERVE_KV:g}; 0: off); on SD3/Flux over "
      "each block's own inputs along the anchors' trajectories, off unless given (docs/flow.md)")


def preservation_defaults(cfg: TrainingConfig, n_concepts):
    """`cfg` with --preserve_weight and --preserve_kv left unset filled: rows only when several concepts are
    erased, the key/value penalty whenever there are anchors and the train method trains keys and values
    (both 0 without --preserve)."""
    weight, kv = cfg.preserve_weight, cfg.preserve_kv
    if weight is None:
        weight = 1.0 if cfg.preserve and n_concepts > 1 else 0.0
    if kv is None:
        # SD3, Flux (no closed form: the penalty over each block's own inputs) measured no better than
        # without it on the toy SD3 (docs/flow.md), so there it is on only when --preserve_kv is given
        family, _ = declared_family(cfg.base_model)
        modulated = family is not None and not family.CLOSED_FORM_KV
        kv = PRESERVE_KV if cfg.preserve and trains_keys_and_values(cfg.train_method) and not modulated else 0.0
    return replace(cfg, preserve_weight=weight, preserve_kv=kv)


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


def adversary_config(cfg: TrainingConfig):
    """The AdversaryConfig of the --robust settings (adversarial.make_adversary), None without --robust."""
    from .adversarial import AdversaryConfig
    if not cfg.robust:
        return None
    return AdversaryConfig(tokens=cfg.robust_tokens, steps=cfg.robust_steps, every=cfg.robust_every,
                           weight=cfg.robust_weight, seed=cfg.seed)


def prepare(cfg: TrainingConfig, task="text2img"):
    """trainer.prepare() with the runtime settings of add_runtime_args: the base model loaded, its trained
    tensors selected."""
    return trainer.prepare(cfg.base_model, cfg.train_method, cfg.device, cfg.mixed_precision, task, cfg.teacher,
                           cfg.gradient_checkpointing, cfg.channels_last, cfg.compile)


def check_preservation_args(cfg: TrainingConfig):
    """One line naming the fix for inconsistent --preserve / --robust flags."""
    cli.require_positive(cfg.settings(), "robust_every", "robust_steps", "robust_tokens")
    if cfg.preserve < 0:
        cli.fail(f"--preserve must be 0 (off) or a number of anchor prompts, not {cfg.preserve}")
    if (cfg.preserve_weight or 0) < 0 or (cfg.preserve_kv or 0) < 0:
        cli.fail("--preserve_weight and --preserve_kv must be 0 or more")
    if not cfg.preserve and (cfg.preserve_kv or cfg.preserve_weight):
        cli.fail("--preserve_kv and --preserve_weight weigh anchor prompts: pass --preserve N (e.g. 200) too")


def check_training_args(cfg: TrainingConfig):
    """One line naming the fix for trainer flags that would fail or mislead later: run before any
    model loads (lr, device, batch size against the stream width)."""
    if cfg.lr is not None and not (math.isfinite(cfg.lr) and cfg.lr > 0):
        cli.fail(f"--lr must be a finite number above 0, got {cfg.lr}; pass e.g. --lr 1e-4 (or leave it to the "
                 "recipe)")
    try:
        check_device(cfg.device)
    except InputError as e:
        cli.fail(str(e))
    if cfg.checkpoint_every < 0:
        cli.fail(f"--checkpoint_every must be 0 (no checkpoints) or a number of iterations, got {cfg.checkpoint_every}")
    if cfg.xt_source == "stream" and cfg.batch_size > cfg.stream_width:
        cli.fail(f"--batch_size {cfg.batch_size} draws more trajectories per iteration than --stream_width "
             f"{cfg.stream_width} keeps alive; pass --stream_width {cfg.batch_size} or more")


def model_family(pipe):
    """The key of a trainer's per-family defaults (recipes.FAMILIES): 'toy' for the bundled toy world's
    UNets, 'toy-<family>' for its other models that have their own (the toy SD3: 'toy-sd3'), else the
    model family's key (spatial_erasure.families: 'sd', 'sdxl', 'sd3', 'flux')."""
    key = family_of(pipe).KEY
    if is_toy(pipe):
        return f"toy-{key}" if f"toy-{key}" in recipes.FAMILIES else "toy"
    return key


def closed_forms(cfg: TrainingConfig, family):
    """`cfg` for a model family whose text tokens reach the key/value projections through per-timestep
    modulation (SD3, Flux: family.CLOSED_FORM_KV is False): --twin_map, which solves them in closed
    form from the text encoder's tokens alone, is refused in one line. (The key/value penalty applies,
    over what each projection itself receives: anchors.input_moments.)"""
    if not family.CLOSED_FORM_KV and getattr(cfg, "twin_map", False):
        cli.fail(f"--twin_map solves SD's cross-attention keys and values in closed form, which {family.NAME}'s "
                 "joint blocks have no analogue of (the text tokens are modulated per timestep first); pass "
                 "--no-twin_map")
    return cfg


# Settings a --config never carries over: where this run writes, on what device, and the run's own switches.
CONFIG_SKIPPED = ("output", "save_path", "resume", "restart", "overwrite", "device", "config", "print_config")


def add_config_args(p):
    """--config (retrain from a recorded config) and --print-config (show the resolved settings)."""
    p.add_argument("--config", default=None, help="retrain from a config: an erasure file (the arguments it "
                   "records), its JSON log, or a JSON file of flags; the flags given here override it, and --recipe "
                   "fills only what it leaves unset (never carried over: --output, --device, --resume)")
    p.add_argument("--print-config", dest="print_config", action="store_true",
                   help="print the resolved settings as JSON and exit (settings left to the model family, e.g. lr, "
                        "show null: they are resolved when the model loads)")


def read_config(path):
    """{flag: value} of --config: an erasure file's recorded args, a trainer's JSON log, or a JSON dict."""
    from .erasure_file import ErasureFileError, read_metadata
    if path.endswith(".safetensors"):
        try:
            config = read_metadata(path).get("args")
        except ErasureFileError as e:
            cli.fail(str(e))
    else:
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as e:
            cli.fail(f"--config {path} could not be read as JSON ({e}); pass an erasure file or a JSON file of flags")
        config = config.get("args", config) if isinstance(config, dict) else None
    if not isinstance(config, dict):
        cli.fail(f"--config {path} holds no settings; pass an erasure file written by a trainer, or a JSON object "
                 "of flags")
    return config


def parse(p, argv=None):
    """p.parse_args(argv) with --config: its settings become the defaults (every flag given overrides
    them); a setting the parser does not know is refused in one line naming the nearest flag, as an
    unknown flag is."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    path = pre.parse_known_args(argv)[0].config
    if path:
        config = read_config(path)
        known = {a.dest: a for a in p._actions}
        unknown = sorted(k for k in config if k not in known and k not in CONFIG_SKIPPED)
        if unknown:
            near = difflib.get_close_matches(unknown[0], [k for k in known if k != "help"], n=1)
            cli.fail(f"--config {path}: unknown setting {unknown[0]!r}" + (f"; did you mean --{near[0]}?" if near else
                     "; this trainer's flags are listed by --help") + " (fix or remove it)")
        defaults = {k: v for k, v in config.items() if k in known and k not in CONFIG_SKIPPED}
        for k in defaults:
            known[k].required = False              # e.g. --erase_concept: the config names it
        p.set_defaults(**defaults)
    return p.parse_args(argv)


def check_output(path, cfg: TrainingConfig):
    """One line naming the fix, before any model loads, when the erasure file `path` cannot be written,
    or exists (a finished run) and --overwrite is not given."""
    cli.check_output(path)
    try:
        files.check_new(path, cfg.overwrite)
    except InputError as e:
        cli.fail(str(e))


def print_config(cfg: TrainingConfig):
    """With --print-config: the resolved settings as JSON on stdout, then exit 0."""
    if cfg.print_config:
        print(json.dumps({k: v for k, v in cfg.settings().items() if k not in ("print_config",)}, indent=1,
                         default=str))
        raise SystemExit(0)
