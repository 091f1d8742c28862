"""spatial_erasure: concept erasure for Stable Diffusion, with spatial control.

    from spatial_erasure import erase, Erasure      # the Python API (spatial_erasure.api)
    erasure = erase("Vincent van Gogh")             # ESD, the recommended recipe, the bundled toy model
    with erasure.applied(pipe): ...

Module map (the scripts in original_esd/, inpainting_erasure/ and evaluation/ are thin entry points):

  api               erase(concept, **flags) -> Erasure (save / load / apply / applied / export)
  models            load_pipeline(hub id | folder) -> diffusers pipeline; architecture; weight fingerprint
  families/         one module per model family (sd, sdxl, sd3, flux): how a pipeline is recognised (family_of,
                    or declared_family from model_index.json before weights load), how text is encoded, what
                    each train method selects, export names; a new base model = one file + a registry line
    ldm_names       SDXL's diffusers UNet module names in the LDM layout (its kohya exports)
  conditioning      Cond, the denoiser's conditioning for a batch of prompts; cut-prompt notes
  prompts           encode prompts once (the family's encode); prompt CSV read/write; variations with twins
  worlds            World: what differs between the toy world and real SD (prompts, sampling); world_of(pipe)
  selection         the tensors a train method selects (the family's TRAIN_METHODS); counts
  erasure_file      the erasure file: save / read / apply (checked) / erased(); the base model it records
  errors            InputError: bad input whose one-line message names the fix
  cli               the shared command line: generic flags, help layout, `error: ...` exits
  training_flags    the trainers' flags (method, x_t source, recipe, preservation, robustness) and their checks
  configs           EsdConfig / GridConfig: the parsed settings as typed, frozen records; the methods take these
  files             atomic writes under unique temporaries, output checks, one run per output (OutputLock)
  trajectories      where x_t comes from: sample, cache, noise, stream; the UNet call; inpainting inputs
  objectives        the losses, step by step: esd_loss, grid_erasure_loss; teacher_eps, esd_target, masked MSE
  recipes           --recipe paper / recommended (the default), the grid presets, the one order flags resolve in
  twin_map          the closed-form twin map of the text embedding in attn2.to_k/to_v (--twin_map)
  anchors           broad preservation: anchor prompts and the closed-form key/value penalty (--preserve)
  adversarial       the inner soft-prompt attack of adversarial erasure (--robust)
  trainer           the erasure training loop and the model prepared for it (trained tensors fp32, teacher)
  esd               ESD (original_esd/esd_sd.py, esd_sdxl.py): prompts, x_t source, training
  grid_erasure      grid-masked inpainting erasure (inpainting_erasure/): its flags, presets, training, report
  grid_cases        grid erasure's cases (variations x masks, retain prompts, anchors) and their x_t sources
  grid_records      GridCases / GridSources: the records grid_cases builds and grid_erasure_loss reads
  masks             grid and held-out masks, user masks, latent-size masks, region crops
  sampling          seeded generation: text-to-image (generate) and inpainting with paste-back (inpaint)
  distributed       generation split across `accelerate launch` processes; each process's device
  checkpoint        resumable training state in safetensors; atomic saves
  reports           figures, tables, JSON, written atomically
  export            erasure file -> diffusers LoRA, kohya LoRA, fused pipeline (python -m spatial_erasure.export)
  learned_tokens    new tokens learned in copies of the text encoder (the attacks, --robust)
  phrasings         phrasings no trainer used, by kind, and every prompt the trainers use (collateral evaluation)
  attacks/          attacks that bring a concept back (evaluation/attack_evaluation.py), one module each:
    prompt_sets     fixed prompt sets per concept (paraphrase, misspelling, famous work, mixed, split), concept pairs
    inversion       Concept Inversion (a token learned on the model); the denoising pieces and the judge's share
    soft_prompt     the soft-prompt attack: adversarial embeddings before a concept prompt (learned tokens)
  architectures     public SD-1.x / SD-inpainting / SD 2 / SDXL UNet configs with random weights (bench)
  testing           tiny random-weight pipelines for tests
  evaluation/       the evaluation library (see its docstring): metrics, concept_impact, regions, weight_change,
                    collateral, attack_suite, substitutes, bars, and the toy model's quality checks
                    toy_model_quality, toy_inpainting_quality
  toyart/           the toy world: world (its vocabulary), painter (procedural images), classifier, tokenizer,
                    vae, composites, and the training of the toy models themselves, train_sd,
                    train_sd_inpainting and train_sd3 (the toy SD3, in training)
"""
import os

# diffusers imports transformers' image processors, which warn on every start that torchvision
# (not needed here) is absent; users can still ask for warnings with TRANSFORMERS_VERBOSITY=warning.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

__version__ = "0.1.0"


def __getattr__(name):
    """`from spatial_erasure import erase, Erasure` without importing torch for every submodule."""
    if name in ("erase", "Erasure"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'spatial_erasure' has no attribute {name!r}")
