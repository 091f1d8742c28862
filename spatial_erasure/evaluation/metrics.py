"""Judges and metrics shared by every evaluation script: what style and subject an image shows,
how strongly the target concept is present, and how far two sets of images are apart.

Two judges answer the same questions:
- `ToyJudge`: the bundled toy classifier (style and subject heads, 128-d features): the toy
  world's stand-in for UnlearnCanvas's style classifier.
- `ClipJudge`: CLIP zero-shot among the target, other artists, art styles and "a photo"
  (subjects likewise), with CLIP image embeddings as features, for real Stable Diffusion.
`make_judge(pipe, ...)` picks the right one. Metrics follow UnlearnCanvas: UA (unlearning accuracy)
= share of target images *not* recognised as the target; retain accuracy (IRA in domain, CRA
across domains) = share of other prompts still recognised as what they ask for.
"""
import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..distributed import process_state
from ..families import denoiser_of
from ..models import TOY_CLASSIFIER, ModelLoadError, fingerprint
from ..prompts import REAL_RETAIN, REAL_STYLES, REAL_SUBJECTS, is_toy
from ..reports import save_png
from ..sampling import generate

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Verdict:
    """What a judge says about N images."""
    style_probs: np.ndarray       # (N, S) over style_names
    style_names: list
    subject_probs: np.ndarray     # (N, U) over subject_names
    subject_names: list
    features: np.ndarray          # (N, D), for similarity and Frechet distance

    def score(self, style):
        """Probability of `style` per image: the concept score."""
        return self.style_probs[:, self.style_names.index(style)]

    def styles(self):
        return [self.style_names[i] for i in self.style_probs.argmax(1)]

    def subjects(self):
        return [self.subject_names[i] for i in self.subject_probs.argmax(1)]


class ToyJudge:
    """The bundled toy classifier; images uint8 (N, H, W, 3)."""
    name = "toy classifier"

    def __init__(self, path=TOY_CLASSIFIER):
        from ..toyart.classifier import load_classifier
        from ..toyart.world import STYLES, SUBJECTS
        self.model, self.style_names, self.subject_names = load_classifier(path), STYLES, SUBJECTS

    @torch.no_grad()
    def __call__(self, images):
        from ..toyart.classifier import predict, to_tensor
        ps, pu, f = predict(self.model, to_tensor(images))
        return Verdict(ps.numpy(), self.style_names, pu.numpy(), self.subject_names, f.numpy())


def _projected(out):
    """CLIP's projected embedding: transformers 4 returns the tensor, 5 an output whose pooler_output it is."""
    return out if torch.is_tensor(out) else out.pooler_output


class ClipJudge:
    """CLIP zero-shot (transformers' CLIPModel, any hub id or folder) among style and subject labels."""

    def __init__(self, clip_model, styles, subjects, device="cpu"):
        from transformers import CLIPModel, CLIPTokenizer
        try:
            self.model = CLIPModel.from_pretrained(clip_model, use_safetensors=True).to(device).eval()
            tok = CLIPTokenizer.from_pretrained(clip_model)
        except OSError as e:
            raise ModelLoadError(f"could not load CLIP model {clip_model!r} ({str(e).splitlines()[0]}); pass "
                             "--clip_model with a hub id or a folder holding a CLIPModel and its tokenizer")
        self.name, self.device = f"CLIP zero-shot ({clip_model})", device
        self.style_names = list(dict.fromkeys([*styles, "photo"]))
        self.subject_names = list(dict.fromkeys(subjects))
        self.style_emb = self._text(tok, [f"a painting in the style of {s}" if s != "photo" else "a photo"
                                          for s in self.style_names])
        self.subject_emb = self._text(tok, [f"a picture of a {s}" for s in self.subject_names])

    @torch.no_grad()
    def _text(self, tok, texts):
        ids = tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        return F.normalize(_projected(self.model.get_text_features(**ids.to(self.device))), dim=-1)

    @torch.no_grad()
    def __call__(self, images, batch=32):
        size = self.model.config.vision_config.image_size
        mean = torch.tensor(CLIP_MEAN, device=self.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=self.device)[:, None, None]
        feats = []
        for i in range(0, len(images), batch):
            x = torch.as_tensor(np.asarray(images[i:i + batch])).permute(0, 3, 1, 2).float().to(self.device) / 255
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
            feats.append(F.normalize(_projected(self.model.get_image_features(pixel_values=(x - mean) / std)), dim=-1))
        f = torch.cat(feats)
        scale = self.model.logit_scale.exp()
        ps, pu = (scale * f @ self.style_emb.T).softmax(-1), (scale * f @ self.subject_emb.T).softmax(-1)
        return Verdict(ps.cpu().numpy(), self.style_names, pu.cpu().numpy(), self.subject_names, f.cpu().numpy())


def make_judge(pipe, target, clip_model="openai/clip-vit-large-patch14", styles=(), subjects=(),
               classifier=TOY_CLASSIFIER):
    """ToyJudge for the toy world's models; else ClipJudge among `target`, `styles` (default: other
    famous artists and art styles) and "photo", and `subjects` (default: a list of everyday subjects)."""
    if is_toy(pipe):
        return ToyJudge(classifier)
    styles = [target, *(styles or [a for a in REAL_RETAIN if a != target] + REAL_STYLES)]
    return ClipJudge(clip_model, styles, subjects or REAL_SUBJECTS, device=pipe.device)


def accuracy(predicted, expected):
    """Share of predicted labels equal to the expected ones (retain accuracy)."""
    return float(np.mean([p == e for p, e in zip(predicted, expected)]))


def psnr(a, b):
    """Per image PSNR (dB) between uint8 image sets; inf where identical."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d.reshape(len(a), -1).mean(1)
    return np.where(mse > 0, 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)), np.inf)


def feature_distance(fa, fb):
    """Per pair cosine distance (1 - cos) between two feature sets of the same images' prompts and seeds."""
    fa, fb = torch.as_tensor(fa).double(), torch.as_tensor(fb).double()
    return (1 - F.cosine_similarity(fa, fb, dim=1)).numpy()


def frechet_distance(fa, fb):
    """Frechet distance between Gaussians fitted to two feature sets (N, D): the FID formula on any features.
    ||mu_a - mu_b||^2 + tr(Sa + Sb - 2 (Sa Sb)^1/2), the trace of the root from the eigenvalues of
    Sa^1/2 Sb Sa^1/2 (symmetric PSD, so no complex square roots)."""
    fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
    if len(fa) < 2 or len(fb) < 2:
        raise ValueError("the Frechet distance needs at least 2 images per set; generate more (e.g. "
                         "--images_per_test 2)")
    mu = fa.mean(0) - fb.mean(0)
    sa, sb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ sb @ root_a), 0, None)).sum()
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * cross)


def lpips_distance(a, b):
    """LPIPS (AlexNet) per pair when the `lpips` package and its weights are available, else None."""
    try:
        import lpips
        net = lpips.LPIPS(net="alex", verbose=False)
    except Exception:   # not installed, or its weights cannot be downloaded here
        return None
    to = lambda x: torch.as_tensor(x).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    with torch.no_grad():
        return net(to(a), to(b)).flatten().numpy()


def cached_generate(pipe, prompts, seeds, folder, tag, num_inference_steps, guidance_scale, desc=None):
    """generate(), resumable: each image is a PNG in `folder` named by tag, seed and a hash of (denoiser
    and VAE fingerprints, prompt, steps, guidance); images already there are read back instead of
    generated. The fingerprints tell a base UNet from the same UNet with an erasure applied, and a
    retuned decoder from the old one."""
    os.makedirs(folder, exist_ok=True)
    fp = f"{fingerprint(denoiser_of(pipe))}|{fingerprint(pipe.vae)}"
    key = lambda p: hashlib.sha1(f"{fp}|{p}|{num_inference_steps}|{guidance_scale}".encode()).hexdigest()[:10]  # noqa: E731
    names = [os.path.join(folder, f"{tag}-{s}-{key(p)}.png") for p, s in zip(prompts, seeds)]
    todo = [i for i, n in enumerate(names) if not os.path.exists(n)]
    if todo:
        new = generate(pipe, [prompts[i] for i in todo], [seeds[i] for i in todo], num_inference_steps,
                       guidance_scale, desc=desc)
        state = process_state()
        if state.is_main_process:     # every process has every image (generate gathers); one writes
            for i, im in zip(todo, new):
                save_png(im, names[i])
        state.wait_for_everyone()     # all files in place before any process reads them or lists `todo` again
    return np.stack([np.asarray(Image.open(n).convert("RGB")) for n in names])
