"""Erased Stable Diffusion (Gandikota et al., ICCV 2023), one program for SD and SDXL.

`original_esd/esd_sd.py` and `original_esd/esd_sdxl.py` are this program with their defaults
(`SD_DEFAULTS`, `SDXL_DEFAULTS`): one copy of the loop, so no run trains twice.

Per iteration (`objectives.esd_loss`): x_t from `--xt_source` (faithful `sample`: k ~ U[0,
num_inference_steps-1] guided steps of the frozen model on erase_from; `stream`: the current
states of `--stream_width` such trajectories, which then move one step on the teacher's own
predictions); one batched teacher call with the original weights gives eps_c (concept), eps_null
("") and eps_from; the student (trained UNet, erase_from prompt) is regressed onto
eps_from - negative_guidance * (eps_c - eps_null).

The learning rate and negative guidance default to the model family's (`DEFAULTS`): on the toy
model the measured 7e-4 and 4 (the bundled ESD-x file), on SD the reference's 5e-5 and 2, on SDXL
its 2e-4 and 1.
"""
import os

from . import cli
from .anchors import anchor_prompts
from .erasure_file import file_name_part, training_metadata
from .models import MODELS_DIR, TOY_MODEL
from .objectives import EsdPrompts, esd_loss
from .errors import InputError
from .prompts import encode, parse_concepts
from .trainer import forward_equivalents, prepare_from_args, resolution, seed_everything, train
from .trajectories import make_source

STREAM_WIDTH = 8   # xt_source stream (docs/real_size.md): 1 and 2 lose other styles, 4 loses them erasing Monet
# Per model family (cli.model_family): the toy model's values were measured (docs/results.md), SD's and SDXL's
# are the reference ESD code's.
DEFAULTS = {"toy": dict(lr=7e-4, negative_guidance=4.0), "sd": dict(lr=5e-5, negative_guidance=2.0),
            "sdxl": dict(lr=2e-4, negative_guidance=1.0)}
# What the two entry scripts differ in: the default model, and the guidance of the x_t sampling.
SD_DEFAULTS = dict(base_model=TOY_MODEL, guidance_scale=3.0)
SDXL_DEFAULTS = dict(base_model="stabilityai/stable-diffusion-xl-base-1.0", guidance_scale=2.0)


def default_name(concept, erase_from, method):
    """The reference repo's file name: esd-{concept}-from-{from}-{method}.safetensors, spaces as _;
    several concepts (parse_concepts) joined by +, each from itself unless its erase_from says otherwise."""
    pairs = parse_concepts(concept, erase_from)
    what = "+".join(file_name_part(c) for c, _ in pairs)
    source = "+".join(file_name_part(f or c) for c, f in pairs)
    return f"esd-{what}-from-{source}-{method}.safetensors"


def family_help(key):
    """'default: 0.0007 toy model, 5e-05 SD, 0.0002 SDXL': a flag's per-family defaults, for --help."""
    names = {"toy": "toy model", "sd": "SD", "sdxl": "SDXL"}
    return "default: " + ", ".join(f"{DEFAULTS[f][key]} {name}" for f, name in names.items())


def build_parser(defaults, description):
    p = cli.parser(description)
    a = p.add_argument
    a("--erase_concept", required=True, help="concept to erase, e.g. 'Vincent van Gogh'; several at once as "
      "'A;B;C' or a CSV file with a concept column (and optionally erase_from)")
    a("--erase_from", default=None, help="prompt to erase it from (default: the concept itself; one concept only)")
    a("--preserve", type=int, default=0, help="broad preservation: N random anchor prompts (spatial_erasure.anchors) "
      "whose predictions the student keeps, --batch_size of them per iteration; 0: off, as the reference ESD")
    a("--preserve_weight", type=float, default=1.0, help="weight of the preservation term")
    cli.add_model_arg(p, defaults["base_model"])
    cli.add_training_args(p, iterations=200, xt_source="sample", bank_size=8, stream_width=STREAM_WIDTH,
                          guidance_scale=defaults["guidance_scale"], lr_help=family_help("lr"),
                          eta_help=family_help("negative_guidance"),
                          batch_help="x_t samples per iteration",
                          seed_help="seeds torch, numpy, random and the x_t noise")
    cli.add_output_arg(p, str(MODELS_DIR), "folder for the erasure file (named as the reference repo names it) and "
                       "its JSON log, or the .safetensors path itself (default: models/)", save_path_alias=True)
    return p


def parse_args(argv=None, defaults=SD_DEFAULTS, description=__doc__):
    args = build_parser(defaults, description).parse_args(argv)
    cli.require_positive(args, "iterations", "batch_size", "bank_size", "stream_width", "num_inference_steps")
    if args.preserve < 0:
        cli.fail(f"--preserve must be 0 (off) or a number of anchor prompts, not {args.preserve}")
    try:
        parse_concepts(args.erase_concept, args.erase_from)
    except InputError as e:
        cli.fail(str(e))
    return args


def output_path(args):
    """--output as the erasure file: a .safetensors path as given, else the reference name in that folder."""
    if args.output.endswith(".safetensors"):
        return args.output
    return os.path.join(args.output, default_name(args.erase_concept, args.erase_from, args.train_method))


def build_prompts(pipe, args, pairs, res):
    """The concepts, "" and their erase_from prompts (`pairs`, parse_concepts), encoded once (text
    encoders are offloaded after). With several concepts, row i of each is concept i: the x_t
    source's cases."""
    concept = encode(pipe, [c for c, _ in pairs], res)
    erase_from = encode(pipe, [f or c for c, f in pairs], res)
    anchors = encode(pipe, anchor_prompts(args.preserve, args.seed, [c for c, _ in pairs]), res) if args.preserve \
        else None
    return EsdPrompts(concept, encode(pipe, [""], res), erase_from, separate_from=any(f for _, f in pairs),
                      anchors=anchors, preserve_weight=args.preserve_weight)


def build_source(st, args, prompts, latent):
    """The x_t source: trajectories of the frozen model on erase_from (a bank or warm-up runs here)."""
    with st.autocast():                            # in the compute dtype
        return make_source(args.xt_source, st.teacher_unet, st.pipe.scheduler, prompts.erase_from, prompts.null,
                           args.guidance_scale, args.num_inference_steps, latent, st.teacher_params, args.bank_size,
                           args.stream_width, st.process_seed(args.seed), st.device, st.dtype)


@cli.reports_errors
def main(args):
    seed_everything(args.seed)
    st = prepare_from_args(args)
    cli.fill_defaults(args, DEFAULTS[cli.model_family(st.pipe)])     # lr, negative guidance of this model family
    res, latent = resolution(st.pipe, args.resolution)
    pairs = parse_concepts(args.erase_concept, args.erase_from)
    prompts = build_prompts(st.pipe, args, pairs, res)
    st.offload("text_encoder", "text_encoder_2", "vae")
    source = build_source(st, args, prompts, latent)

    def loss_fn(it, rng):
        return esd_loss(rng, st, source, prompts, args.batch_size, args.negative_guidance)

    rows = (2 + prompts.separate_from + bool(args.preserve)) * args.batch_size     # teacher rows
    student_rows = (2 if args.preserve else 1) * args.batch_size

    def cost():
        c = source.cost()
        return {**c, **forward_equivalents(c["sampling_forwards"], args.iterations, teacher_rows=rows,
                                           student_rows=student_rows, rows=args.batch_size,
                                           checkpointing=args.gradient_checkpointing)}

    out = output_path(args)
    meta = training_metadata(args, st, ";".join(c for c, _ in pairs), ";".join(f or c for c, f in pairs), res,
                             **({"concepts": [c for c, _ in pairs]} if len(pairs) > 1 else {}))
    report = train(loss_fn, st, out, args.iterations, args.lr, meta, seed=args.seed,
                   checkpoint_every=args.checkpoint_every, resume=args.resume, desc=f"ESD {args.train_method}",
                   extra_report=cost)
    if st.state.is_main_process:
        print(f"wrote {out} ({report['tensors_changed']} tensors, {report['parameters_changed']:,} parameters) in "
              f"{report['train_seconds']:.1f} s, {report['seconds_per_iteration']:.3f} s/iteration, "
              f"{report['forward_equivalents_per_row']:.1f} UNet forward-equivalents per row, bank "
              f"{report['bank_seconds']} s ({report['bank_forwards']} forwards), peak memory "
              f"{report['peak_memory_mb']:.0f} MiB")
    return out
