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
from . import adversarial
from .anchors import anchor_prompts, key_value_penalty
from .erasure_file import file_name_part, training_metadata
from .models import MODELS_DIR, TOY_MODEL
from .objectives import EsdPrompts, esd_loss
from .errors import InputError
from .prompts import encode, parse_concepts
from .trainer import forward_equivalents, originals, prepare_from_args, resolution, seed_everything, train
from .trajectories import make_source

PRESERVE_XT = {"concept": "the concept's x_t (no extra trajectories)",
               "own": "the anchors' own trajectories (a second x_t source of --xt_source; one more teacher row "
                      "with stream)"}
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
    cli.add_preservation_args(p, "MSE of the student's predictions for --batch_size anchors per iteration against "
                              "the frozen model's")
    a("--preserve_xt", default="concept", choices=list(PRESERVE_XT), help="x_t of the anchors' rows: "
      + cli.choices_help(PRESERVE_XT))
    cli.add_robust_args(p)
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
    cli.check_preservation_args(args)
    try:
        pairs = parse_concepts(args.erase_concept, args.erase_from)
    except InputError as e:
        cli.fail(str(e))
    return cli.preservation_defaults(args, len(pairs))


def output_path(args):
    """--output as the erasure file: a .safetensors path as given, else the reference name in that folder."""
    if args.output.endswith(".safetensors"):
        return args.output
    return os.path.join(args.output, default_name(args.erase_concept, args.erase_from, args.train_method))


def build_prompts(pipe, args, pairs, res):
    """The concepts, "" and their erase_from prompts (`pairs`, parse_concepts), encoded once (text
    encoders are offloaded after), and the anchors' encoding (None without --preserve). With several
    concepts, row i of each is concept i: the x_t source's cases."""
    concept = encode(pipe, [c for c, _ in pairs], res)
    erase_from = encode(pipe, [f or c for c, f in pairs], res)
    anchors = encode(pipe, anchor_prompts(args.preserve, args.seed, [c for c, _ in pairs]), res) if args.preserve \
        else None
    prompts = EsdPrompts(concept, encode(pipe, [""], res), erase_from, separate_from=any(f for _, f in pairs),
                         anchors=anchors if args.preserve_weight else None, preserve_weight=args.preserve_weight)
    return prompts, anchors


def build_source(st, args, cond, null, latent, seed, desc="x_t"):
    """An x_t source: trajectories of the frozen model on `cond`, one case per row (a bank or
    warm-up runs here): erase_from's, or the anchors' (--preserve_xt own)."""
    with st.autocast():                            # in the compute dtype
        return make_source(args.xt_source, st.teacher_unet, st.pipe.scheduler, cond, null, args.guidance_scale,
                           args.num_inference_steps, latent, st.teacher_params, args.bank_size, args.stream_width,
                           st.process_seed(seed), st.device, st.dtype, desc=desc)


@cli.reports_errors
def main(args):
    seed_everything(args.seed)
    st = prepare_from_args(args)
    cli.fill_defaults(args, DEFAULTS[cli.model_family(st.pipe)])     # lr, negative guidance of this model family
    res, latent = resolution(st.pipe, args.resolution)
    pairs = parse_concepts(args.erase_concept, args.erase_from)
    prompts, anchors = build_prompts(st.pipe, args, pairs, res)
    adversary = adversarial.from_args(st.pipe, [f or c for c, f in pairs], args)     # before the offload
    st.offload("text_encoder", "text_encoder_2", "vae")
    source = build_source(st, args, prompts.erase_from, prompts.null, latent, args.seed)
    own = prompts.anchors is not None and args.preserve_xt == "own"
    anchor_source = build_source(st, args, prompts.anchors, prompts.null, latent, args.seed + 1,
                                 "anchor x_t") if own else None
    penalty = key_value_penalty(args, anchors, st.params, originals(st))

    def loss_fn(it, rng):
        loss = esd_loss(rng, st, source, prompts, args.batch_size, args.negative_guidance, anchor_source, adversary)
        return loss + args.preserve_kv * penalty(st.params) if penalty is not None else loss

    keep = prompts.anchors is not None
    rows = (2 + prompts.separate_from + keep + (own and anchor_source.streams)) * args.batch_size  # teacher rows
    student_rows = (1 + keep + bool(adversary)) * args.batch_size

    def cost():
        c = source.cost()
        sampling = c["sampling_forwards"] + (anchor_source.cost()["sampling_forwards"] if own else 0)
        return {**c, **({"anchor_" + k: v for k, v in anchor_source.cost().items() if k != "xt_source"} if own
                        else {}),
                **(adversary.report() if adversary else {}),
                **forward_equivalents(sampling, args.iterations, teacher_rows=rows, student_rows=student_rows,
                                      rows=args.batch_size, checkpointing=args.gradient_checkpointing,
                                      attack_rows=adversary.attack_rows(args.batch_size) if adversary else 0)}

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
