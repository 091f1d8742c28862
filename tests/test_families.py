"""Model families (spatial_erasure.families): each pipeline kind is recognised by one family, before
and after its weights load; SD3's and Flux's text encoding, denoiser call and latent packing equal
their diffusers pipelines' own; the train-method tables select what they say; and no module outside
families/ takes up a family-specific name it did not already have (the move into families/ goes on)."""
import os
import re

import pytest
import torch

from conftest import REPO
from spatial_erasure.families import FAMILIES, declared_family, family_of, family_of_denoiser, flux, sd3
from spatial_erasure.testing import tiny_pipeline

KINDS = {"sd": "sd", "sd-inpaint": "sd", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux"}


@pytest.fixture(scope="module")
def pipes():
    return {kind: tiny_pipeline(kind) for kind in KINDS}


def test_every_kind_is_one_familys_before_and_after_loading(pipes, tmp_path):
    for kind, key in KINDS.items():
        pipe = pipes[kind]
        owners = [f.KEY for f in FAMILIES.values() if f.owns(getattr(pipe, f.DENOISER, None))]
        assert owners == [key], (kind, owners)
        assert family_of(pipe).KEY == key
        assert family_of_denoiser(getattr(pipe, family_of(pipe).DENOISER)).KEY == key
        pipe.save_pretrained(tmp_path / kind, safe_serialization=True)
        family, cls = declared_family(tmp_path / kind)
        assert (family.KEY, cls) == (key, type(pipe).__name__)
    assert declared_family(tmp_path / "nothing") == (None, None)


def test_sd3_encoding_and_velocity_are_the_pipelines_own(pipes):
    pipe = pipes["sd3"]
    prompts = ["a painting of a house by Vincent van Gogh", ""]
    cond = sd3.encode(pipe, prompts, max_sequence_length=8)
    with torch.no_grad():
        emb, _, pooled, _ = pipe.encode_prompt(prompts, None, None, do_classifier_free_guidance=False,
                                               max_sequence_length=8)
    assert torch.equal(cond.emb, emb) and torch.equal(cond.pooled, pooled)
    assert cond.emb.shape[1] == pipe.tokenizer.model_max_length + 8, "CLIP tokens, then the T5 zeros"
    one_step_matches_the_pipeline(pipe, sd3, cond[:1])


def test_flux_encoding_packing_and_velocity_are_the_pipelines_own(pipes):
    pipe = pipes["flux"]
    cond = flux.encode(pipe, ["a boat", "a house by Claude Monet"], max_sequence_length=8)
    with torch.no_grad():
        emb, pooled, _ = pipe.encode_prompt(["a boat", "a house by Claude Monet"], None, max_sequence_length=8)
    assert torch.equal(cond.emb, emb) and torch.equal(cond.pooled, pooled)
    x = torch.randn(2, 4, 16, 16)
    packed = pipe._pack_latents(x, 2, 4, 16, 16)
    assert torch.equal(flux.pack(x), packed)
    assert torch.equal(flux.unpack(packed, 16, 16), x)
    assert torch.equal(pipe._unpack_latents(packed, 32, 32, pipe.vae_scale_factor), x)
    assert torch.equal(flux.image_ids(16, 16, "cpu", torch.float32),
                       pipe._prepare_latent_image_ids(2, 8, 8, "cpu", torch.float32))
    one_step_matches_the_pipeline(pipe, flux, cond[:1], guidance=3.5)


def one_step_matches_the_pipeline(pipe, family, cond, **extra):
    """One Euler step of the family's velocity from given latents equals the pipeline's own one-step
    latents (guidance 1 for SD3: no CFG branch; Flux-dev's distilled guidance as an input)."""
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    latents = flux.pack(x) if family is flux else x
    kw = {"guidance_scale": extra.get("guidance", 1.0)}
    out = pipe(prompt_embeds=cond.emb, pooled_prompt_embeds=cond.pooled, latents=latents, num_inference_steps=1,
               height=32, width=32, output_type="latent", **kw).images
    if family is flux:
        out = flux.unpack(out, 16, 16)
    sched = pipe.scheduler
    t = sched.timesteps[0]
    v = family.predict(getattr(pipe, family.DENOISER), x, t, cond, **extra)
    sigma0, sigma1 = sched.sigmas[0], sched.sigmas[1]
    stepped = x + (sigma1 - sigma0) * v
    assert torch.allclose(stepped, out, atol=1e-5), float((stepped - out).abs().max())


@pytest.mark.parametrize("kind,family", [("sd3", sd3), ("flux", flux)])
def test_mmdit_train_methods_select_what_they_say(pipes, kind, family):
    tr = getattr(pipes[kind], family.DENOISER)
    owner = dict(tr.named_modules())

    def chosen(method):
        keep = family.TRAIN_METHODS[method][1]
        return {n for n, _ in tr.named_parameters() if keep(n, owner[n.rpartition(".")[0]])}
    strict = chosen("esd-x-strict")
    kv = r"transformer_blocks\.\d+\.attn\.add_[kv]_proj\.(weight|bias)"
    assert strict and all(re.fullmatch(kv, n) for n in strict)
    assert len(strict) == 4 * len(tr.transformer_blocks), "k and v, weight and bias, in every joint block"
    assert strict <= chosen("esd-x-text") <= chosen("esd-x")
    assert not chosen("esd-x") & chosen("esd-u")
    assert chosen("esd-all") == {n for n, _ in tr.named_parameters()}
    rest = chosen("esd-all") - chosen("esd-x") - chosen("esd-u")      # attention but not Linear: q/k RMSNorms
    assert all(re.search(r"\.attn\.norm_(added_)?[qk]\.weight$", n) for n in rest), rest
    if family is flux:
        ea = chosen("eraseanything")
        assert {n.split(".attn.")[1].split(".")[0] for n in ea} == {"add_k_proj", "add_q_proj"}


# Family-specific names outside families/ (the classes, SD's cross-attention, SDXL's second encoder and
# time embedding), per module, as they stood when families/ began: the counts may fall, never rise, and
# no other module may take one up. Lower a count when a module moves its family code into families/.
FAMILY_NAMES = r"UNet2DConditionModel|SD3Transformer2DModel|FluxTransformer2DModel|attn2|text_encoder_2|" \
               r"addition_embed_type|StableDiffusionXL|StableDiffusion3|FluxPipeline"
LEFT = {"evaluation/weight_change.py": 3, "__init__.py": 1, "export.py": 1, "twin_map.py": 4, "anchors.py": 3,
        "esd.py": 2, "models.py": 6}
EXEMPT = ("families/", "toyart/", "testing.py", "architectures.py")     # families; the toy and test builders


def test_no_module_outside_families_takes_up_a_family_specific_name():
    root = os.path.join(REPO, "spatial_erasure")
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), root)
            if name.endswith(".py") and not rel.startswith(EXEMPT):
                n = len(re.findall(FAMILY_NAMES, open(os.path.join(folder, name)).read()))
                if n:
                    found[rel] = n
    grown = {k: (v, LEFT.get(k, 0)) for k, v in found.items() if v > LEFT.get(k, 0)}
    assert not grown, f"family-specific names outside families/ (found, allowed): {grown}; ask the family instead"
