"""Erased Stable Diffusion (Gandikota et al., ICCV 2023), one program for SD and SDXL.

`original_esd/esd_sd.py` and `original_esd/esd_sdxl.py` are this program with their defaults
(`SD_DEFAULTS`, `SDXL_DEFAULTS`): one copy of the loop, so no run trains twice.

Per iteration (`objectives.esd_loss`): x_t from `--xt_source` (faithful `sample`: k ~ U[0,
num_inference_steps-1] guided steps of the frozen model on erase_from; `stream`: the current
states of `--stream_width` such trajectories, which then move one step on the teacher's own
predictions); one batched teacher call with the original weights gives eps_c (concept), eps_null
("") and eps_from; the student (trained UNet, erase_from prompt) is regressed onto
eps_from - negative_guidance * (eps_c - eps_null).

`--target twin` (objectives.twin_loss) maps the concept onto its neutral twin instead: x_t from the
twins' own trajectories, the student regressed onto eps(x_t, twin), with "" kept.

`--recipe` (spatial_erasure.recipes) sets the method: `paper` is the reference ESD (x_t sampled,
ESD's target, the concept prompt alone: the bundled esd-...-esd-x file), `recommended` (the
default) the best-measured combination. The learning rate and negative guidance default to the
model family's: on the toy model the measured 7e-4 and 4, on SD the reference's 5e-5 and 2, on SDXL
its 2e-4 and 1; ESD's target on a stream takes 4/7 of that lr (measured on the toy model).
"""
import argparse
import os

from . import adversarial, cli, recipes, training_flags
from .anchors import anchor_prompts, input_moments, key_value_penalty
from .configs import EsdConfig
from .distributed import process_state
from .erasure_file import file_name_part, training_metadata
from .files import OutputLock
from .families import FAMILIES, declared_family, family_of
from .models import MODELS_DIR, TOY_MODEL
from .objectives import EsdPrompts, esd_loss, twin_loss
from .errors import InputError
from .prompts import concept_variations, encode, neutral_twin, parse_concepts
from .trainer import forward_equivalents, originals, resolution, seed_everything, train
from .selection import trains_keys_and_values
from .trajectories import make_source
from .twin_map import residual, solve_twin_map, start_from_twin_map
from .worlds import world_of

PRESERVE_XT = {"concept": "the concept's x_t (no extra trajectories)",
               "own": "the anchors' own trajectories (a second x_t source of --xt_source; one more teacher row "
                      "with stream)"}
TARGETS = {"esd": "ESD's: eps(x_t, from) - eta * (eps(x_t, c) - eps(x_t, \"\")), x_t from the prompt's own "
                  "trajectories (the reference)",
           "twin": "eps(x_t, twin): the prompt mapped onto its neutral twin (the prompt without the concept; the "
                   "bare concept's twin is \"\"), x_t from the twin's own trajectories, and \"\" kept "
                   "(objectives.twin_loss)"}
STREAM_WIDTH = 8   # xt_source stream (docs/real_size.md): 1 and 2 lose other styles, 4 loses them erasing Monet
# What the entry scripts differ in: the default model, and the guidance of the x_t sampling (Flux-dev: 1,
# its conditional branch alone, with the distilled guidance input families.flux.GUIDANCE).
SD_DEFAULTS = dict(base_model=TOY_MODEL, guidance_scale=3.0)
SDXL_DEFAULTS = dict(base_model="stabilityai/stable-diffusion-xl-base-1.0", guidance_scale=2.0)
# On MMDiT, esd-x trains the image stream's attention too and costs the toy SD3 a third of its subjects;
# the text stream's keys and values (esd-x-strict) keep them (docs/flow.md). Flux: by analogy, not measured.
SD3_DEFAULTS = dict(base_model="stabilityai/stable-diffusion-3-medium-diffusers", guidance_scale=3.0,
                    train_method="esd-x-strict")
FLUX_DEFAULTS = dict(base_model="black-forest-labs/FLUX.1-dev", guidance_scale=1.0, train_method="esd-x-strict")

FAMILY_DEFAULTS = {"sd": SD_DEFAULTS, "sdxl": SDXL_DEFAULTS, "sd3": SD3_DEFAULTS, "flux": FLUX_DEFAULTS}


def defaults_for(base_model):
    """The defaults of the script that trains `base_model`'s family (read from its model_index.json, no
    weights loaded); SD's when it declares none this toolkit knows (the load then says what it is)."""
    found, _ = declared_family(base_model)
    return FAMILY_DEFAULTS.get(found.KEY, SD_DEFAULTS) if found else SD_DEFAULTS


# The script of each model family ESD trains (they differ only in their defaults).
SCRIPTS = {"sd": "original_esd/esd_sd.py", "sdxl": "original_esd/esd_sdxl.py", "sd3": "original_esd/esd_sd3.py",
           "flux": "original_esd/esd_flux.py"}


def check_script(cfg, family):
    """One line, before any weight loads, when --base_model declares another family than the script's
    (`family`): which family it is and which script trains it."""
    found, cls = declared_family(cfg.base_model)
    if found is None or found.KEY == family:
        return cfg
    where = f"run {SCRIPTS[found.KEY]} with the same flags" if found.KEY in SCRIPTS else "ESD does not train it yet"
    cli.fail(f"--base_model {cfg.base_model} is a {found.NAME} pipeline ({cls}), not {FAMILIES[family].NAME}; {where}")


def default_name(concept, erase_from, method, recipe="paper"):
    """The reference repo's file name: esd-{concept}-from-{from}-{method}.safetensors, spaces as _;
    several concepts (parse_concepts) joined by +, each from itself unless its erase_from says otherwise;
    a recipe other than paper is named at the end (esd-...-esd-x-recommended.safetensors)."""
    pairs = parse_concepts(concept, erase_from)
    what = "+".join(file_name_part(c) for c, _ in pairs)
    source = "+".join(file_name_part(f or c) for c, f in pairs)
    return f"esd-{what}-from-{source}-{method}" + (f"-{recipe}" if recipe != "paper" else "") + ".safetensors"


def family_help(key):
    """'paper: 0.0007 toy model, 5e-05 SD, 0.0002 SDXL': a flag's per-family defaults, for --help."""
    names = {"toy": "toy model", "toy-sd3": "toy SD3", "sd": "SD", "sdxl": "SDXL", "sd3": "SD3", "flux": "Flux"}
    return "model family's: " + ", ".join(f"{recipes.ESD_FAMILY[f][key]} {name}" for f, name in names.items())


def build_parser(defaults=SD_DEFAULTS, description=__doc__):
    p = cli.parser(description)
    concept = p.add_argument_group("concept and prompts")
    concept.add_argument("--erase_concept", required=True, help="concept to erase, e.g. 'Vincent van Gogh'; several "
                         "at once as 'A;B;C' or a CSV file with a concept column (and optionally erase_from)")
    concept.add_argument("--erase_from", default=None, help="prompt to erase it from (default: the concept itself; "
                         "one concept only)")
    cli.add_model_arg(p.add_argument_group("model"), defaults["base_model"])
    m = training_flags.add_recipe_arg(p, "esd")
    m.add_argument("--target", default=None, choices=list(TARGETS), help=cli.choices_help(TARGETS) + "; recipe")
    m.add_argument("--variations", type=int, default=None, help="prompt variations per concept, each with its neutral "
                   "twin (prompts.concept_variations: templates x subjects), trained beside the concept prompt itself; "
                   "0: the concept prompt alone, as the reference; recipe")
    m.add_argument("--null_weight", type=float, default=1.0, help="--target twin: weight of keeping eps(x_t, \"\"), "
                   "the unconditional branch of guidance")
    m.add_argument("--twin_map", action=argparse.BooleanOptionalAction, default=None, help="--target twin: start "
                   "from the closed-form map of the prompts onto their twins in attn2.to_k/to_v "
                   "(spatial_erasure.twin_map; no UNet call); recipe")
    m.add_argument("--twin_map_keep", type=float, default=1.0, help="--twin_map: weight of keeping the --preserve "
                   "anchors' tokens")
    keep = p.add_argument_group("preservation", "what the erasure must leave as it was; --preserve is set by --recipe")
    training_flags.add_preservation_args(keep, "MSE of the student's predictions for --batch_size anchors per "
                                         "iteration against the frozen model's")
    keep.add_argument("--preserve_xt", default="concept", choices=list(PRESERVE_XT), help="x_t of the anchors' rows: "
                      + cli.choices_help(PRESERVE_XT))
    training_flags.add_robust_args(p.add_argument_group("robustness", "adversarial erasure; set by --recipe"))
    training_flags.add_training_args(p.add_argument_group("training"), iterations=None, xt_source=None, bank_size=8,
                                     stream_width=STREAM_WIDTH, guidance_scale=defaults["guidance_scale"],
                                     lr_help=family_help("lr"), eta_help=family_help("negative_guidance"),
                                     batch_help="x_t samples per iteration",
                                     seed_help="seeds torch, numpy, random and the x_t noise",
                                     train_method=defaults.get("train_method", "esd-x"))
    training_flags.add_runtime_args(p.add_argument_group("runtime", "how (not what) it trains"))
    out = p.add_argument_group("output")
    cli.add_output_arg(out, str(MODELS_DIR), "folder for the erasure file (named as the reference repo names it) and "
                       "its JSON log, or the .safetensors path itself (default: models/)", save_path_alias=True)
    training_flags.add_config_args(out)
    return p


def parse_args(argv=None, defaults=SD_DEFAULTS, description=__doc__):
    """The command line as a checked EsdConfig (the recipe's settings filled in, what depends on the model
    family still None); a flag that would fail later ends the run here with one line naming the fix."""
    flags = vars(training_flags.parse(build_parser(defaults, description), argv))
    cfg = EsdConfig.of(recipes.resolve(flags, "esd"))
    cli.require_positive(flags, "iterations", "batch_size", "bank_size", "stream_width", "num_inference_steps")
    training_flags.check_training_args(cfg)
    if (cfg.variations or 0) < 0:
        cli.fail(f"--variations must be 0 (the concept prompt alone) or more, got {cfg.variations}")
    training_flags.check_preservation_args(cfg)
    try:
        pairs = parse_concepts(cfg.erase_concept, cfg.erase_from)
    except InputError as e:
        cli.fail(str(e))
    training_flags.check_output(output_path(cfg), cfg)
    cfg = training_flags.preservation_defaults(cfg, len(pairs))
    training_flags.print_config(cfg)
    return cfg


def output_path(cfg):
    """--output as the erasure file: a .safetensors path as given, else the reference name in that folder."""
    if cfg.output.endswith(".safetensors"):
        return cfg.output
    return os.path.join(cfg.output, default_name(cfg.erase_concept, cfg.erase_from, cfg.train_method, cfg.recipe))


def case_rows(pipe, cfg, pairs):
    """The training cases, (concept prompt c, erase_from prompt, its neutral twin) each: per concept
    of `pairs` (parse_concepts), its erase_from prompt (the concept itself unless given; twin: the
    prompt without the concept, "" for the bare concept), then --variations prompt variations with
    their twins (each variation is its own c and erase_from)."""
    rows, world = [], world_of(pipe)
    for j, (c, f) in enumerate(pairs):
        try:
            twin = neutral_twin(f or c, c)
        except InputError:
            if cfg.target == "twin":
                raise
            twin = ""                                  # the esd target never uses it
        rows.append((c, f or c, twin))
        rows += [(v["prompt"], v["prompt"], v["neutral"])
                 for v in concept_variations(c, cfg.variations, world, cfg.seed + j)]
    return rows


def build_prompts(pipe, cfg, rows, anchor_texts, res):
    """The cases' prompts (`case_rows`), "" and the anchors (None without --preserve), encoded once
    (text encoders are offloaded after). Row i of each is case i: the x_t source's cases."""
    anchors = encode(pipe, anchor_texts, res) if anchor_texts else None
    prompts = EsdPrompts(encode(pipe, [c for c, _, _ in rows], res), encode(pipe, [""], res),
                         encode(pipe, [f for _, f, _ in rows], res), separate_from=any(c != f for c, f, _ in rows),
                         anchors=anchors if cfg.preserve_weight else None, preserve_weight=cfg.preserve_weight,
                         twin=encode(pipe, [z for _, _, z in rows], res) if cfg.target == "twin" else None)
    return prompts, anchors


def build_source(st, cfg, cond, null, latent, seed, desc="x_t"):
    """An x_t source: trajectories of the frozen model on `cond`, one case per row (a bank or
    warm-up runs here): erase_from's, or the anchors' (--preserve_xt own)."""
    with st.autocast():                            # in the compute dtype
        return make_source(cfg.xt_source, st.teacher_unet, st.pipe.scheduler, cond, null, cfg.guidance_scale,
                           cfg.num_inference_steps, latent, st.teacher_params, cfg.bank_size, cfg.stream_width,
                           st.process_seed(seed), st.device, st.dtype, desc=desc)


def anchor_moments(st, cfg, anchors, null, latent):
    """For a family whose text tokens are modulated per timestep before the key/value projections
    (family.CLOSED_FORM_KV False) and --preserve_kv: the second moments of what each trained key/value
    projection receives along the anchors' own trajectories (anchors.input_moments); else None."""
    family = family_of(st.pipe)
    if family.CLOSED_FORM_KV or not cfg.preserve_kv or anchors is None:
        return None
    names = sorted({n[:-len(".weight")] for n in st.params if n.endswith(".weight")
                    and any(k in n for k in family.KEY_VALUE)})
    with st.autocast():
        return input_moments(st.teacher_unet, st.pipe.scheduler, anchors, null, names, latent, cfg.guidance_scale,
                             cfg.num_inference_steps, st.process_seed(cfg.seed + 2), st.teacher_params)


@cli.reports_errors
def main(cfg: EsdConfig):
    """Train the erasure `cfg` describes (parse_args) and write its file and JSON log."""
    seed_everything(cfg.seed)
    out = output_path(cfg)
    lock = OutputLock(out) if process_state().is_main_process else None     # one run per output, from the start
    st = training_flags.prepare(cfg)
    cfg = cfg.resolved("esd", training_flags.model_family(st.pipe))      # what depends on the family: lr, eta
    cfg = training_flags.closed_forms(cfg, family_of(st.pipe))          # SD3, Flux: no twin map
    res, latent = resolution(st.pipe, cfg.resolution)
    pairs = parse_concepts(cfg.erase_concept, cfg.erase_from)
    rows = case_rows(st.pipe, cfg, pairs)
    twin_map = cfg.target == "twin" and cfg.twin_map
    if twin_map and not trains_keys_and_values(cfg.train_method):
        raise InputError(f"--twin_map sets cross-attention keys and values, which --train_method {cfg.train_method} "
                         "does not train; pass --no-twin_map or --train_method esd-x")
    anchor_texts = anchor_prompts(cfg.preserve, cfg.seed, [c for c, _ in pairs]) if cfg.preserve else []
    prompts, anchors = build_prompts(st.pipe, cfg, rows, anchor_texts, res)
    if twin_map:                                   # closed-form start: no UNet call (twin_map.py)
        m = solve_twin_map(st.pipe, [(f, z) for _, f, z in rows], [""] + anchor_texts, res,
                           keep_weight=cfg.twin_map_keep)
        start_from_twin_map(st.params, originals(st), m)
        twin_map_residual = residual(st.pipe, [(f, z) for _, f, z in rows], m, res)
    adversary = adversarial.make_adversary(st.pipe, [f for _, f, _ in rows],
                                           training_flags.adversary_config(cfg))     # before the offload
    st.offload("text_encoder", "text_encoder_2", "vae")
    twin = cfg.target == "twin"                   # x_t from the twins' trajectories, else from erase_from's
    source = build_source(st, cfg, prompts.twin if twin else prompts.erase_from, prompts.null, latent, cfg.seed)
    own = prompts.anchors is not None and cfg.preserve_xt == "own"
    anchor_source = build_source(st, cfg, prompts.anchors, prompts.null, latent, cfg.seed + 1,
                                 "anchor x_t") if own else None
    moments = anchor_moments(st, cfg, anchors, prompts.null, latent)      # SD3, Flux: each block's own inputs
    penalty = key_value_penalty(anchors, st.params, originals(st), cfg.preserve_kv, cfg.train_method, moments)

    def loss_fn(it, rng):
        if twin:
            loss = twin_loss(rng, st, source, prompts, cfg.batch_size, cfg.null_weight, anchor_source, adversary,
                             cfg.negative_guidance)
        else:
            loss = esd_loss(rng, st, source, prompts, cfg.batch_size, cfg.negative_guidance, anchor_source,
                            adversary)
        return loss + cfg.preserve_kv * penalty(st.params) if penalty is not None else loss

    keep = prompts.anchors is not None
    extra_row = (bool(adversary) or cfg.negative_guidance != 0) if twin else prompts.separate_from  # eps(from)
    teacher_rows = (2 + extra_row + keep + (own and anchor_source.streams)) * cfg.batch_size
    student_rows = (1 + (twin and cfg.null_weight > 0) + keep + bool(adversary)) * cfg.batch_size

    def cost():
        c = source.cost()
        sampling = c["sampling_forwards"] + (anchor_source.cost()["sampling_forwards"] if own else 0)
        return {**c, **({"anchor_" + k: v for k, v in anchor_source.cost().items() if k != "xt_source"} if own
                        else {}),
                **(adversary.report() if adversary else {}),
                **forward_equivalents(sampling, cfg.iterations, teacher_rows=teacher_rows, student_rows=student_rows,
                                      rows=cfg.batch_size, checkpointing=cfg.gradient_checkpointing,
                                      attack_rows=adversary.attack_rows(cfg.batch_size) if adversary else 0)}

    meta = training_metadata(cfg.settings(), st.base_fingerprint, ";".join(c for c, _ in pairs),
                             ";".join(f or c for c, f in pairs), res,
                             **({"concepts": [c for c, _ in pairs]} if len(pairs) > 1 else {}),
                             **({"cases": len(rows), "twins": sorted({z for _, _, z in rows})[:50]} if twin else {}),
                             **({"twin_map_residual": round(twin_map_residual, 4)} if twin_map else {}),
                             # SD3, Flux: the penalty's moments came from the anchors' guided trajectories
                             **({"kv_penalty_tensors": len(penalty),
                                 "kv_moment_forwards": 2 * len(anchors) * cfg.num_inference_steps}
                                if moments is not None else {}))
    report = train(loss_fn, st, out, cfg.iterations, cfg.lr, meta, seed=cfg.seed,
                   checkpoint_every=cfg.checkpoint_every, resume=cfg.resume and not cfg.restart,
                   desc=f"ESD {cfg.train_method}", extra_report=cost,
                   sources=[source] + ([anchor_source] if own else []), lock=lock)
    if st.state.is_main_process:
        print(f"wrote {out} ({report['tensors_changed']} tensors, {report['parameters_changed']:,} parameters) in "
              f"{report['train_seconds']:.1f} s, {report['seconds_per_iteration']:.3f} s/iteration, "
              f"{report['forward_equivalents_per_row']:.1f} denoiser forward-equivalents per row, bank "
              f"{report['bank_seconds']} s ({report['bank_forwards']} forwards), peak memory "
              f"{report['peak_memory_mb']:.0f} MiB")
    return out
