r"""Export an erasure file so that stock diffusers, AUTOMATIC1111 and ComfyUI load the erased model.

    python -m spatial_erasure.export models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors \
        --format diffusers --rank 8 --output exports/vangogh-lora        # pipe.load_lora_weights(folder)
    python -m spatial_erasure.export FILE --format kohya --energy 0.99 --output exports/vangogh.safetensors
    python -m spatial_erasure.export FILE --format pipeline --output exports/vangogh-erased

Formats (the files are plain safetensors; provenance goes into their metadata):
  diffusers  OUTPUT/pytorch_lora_weights.safetensors (or OUTPUT itself if it ends in .safetensors), keys
             `unet.<module>.lora_A.weight` (r, in), `unet.<module>.lora_B.weight` (out, r) and, with
             --bias carry, `unet.<module>.lora_B.bias`; no alphas, so diffusers uses alpha = r (scale 1).
  kohya      OUTPUT/<file>-lora.safetensors (or OUTPUT.safetensors), keys `lora_unet_<module, _ for .>` +
             `.lora_down.weight`, `.lora_up.weight`, `.alpha`: the names A1111 and ComfyUI map onto their
             UNets, and that diffusers' load_lora_weights converts; SDXL modules in the LDM layout kohya and
             A1111 use (`input_blocks_4_1_...`, `label_emb_0_0`: spatial_erasure.families.ldm_names), SD 1.x/2.x
             in diffusers' own. Scale alpha / r is 1 (see kohya_state). Metadata: ss_network_dim,
             ss_network_alpha, ss_base_model_version and modelspec.architecture (how A1111 lists it).
  pipeline   OUTPUT/ is a complete pipeline folder (save_pretrained, safetensors) with the erasure fused in;
             OUTPUT/unet/diffusion_pytorch_model.safetensors is the single-file UNet (full state dict,
             diffusers keys, never sharded), which ComfyUI's "Load Diffusion Model" node also reads.

LoRA factors come from a truncated SVD of each changed weight's delta dW = W_erased - W_base (conv kernels
flattened to (out, in*k*k)), at --rank r or the smallest r keeping --energy of sum(s^2). Biases (ESD-x
changes attn2.to_out.0.bias) are dropped by default: diffusers/peft load `lora_B.bias` (lora_bias=True),
but peft then refuses `pipe.fuse_lora()` (to_q/k/v have no bias to merge into), and diffusers' kohya
converter does not take ComfyUI's `.diff_b`; measured, dropping them changes at most one image in 32.
--bias carry keeps them: as lora_B.bias (diffusers; exact, not fusable) or `.diff_b` (kohya; ComfyUI
and Forge read it). Other 1-D tensors (norms) have no LoRA slot at all: the kohya format with --bias
carry writes them whole, as `.diff` (weights) and `.diff_b` (biases), which ComfyUI and Forge add to
the base; diffusers' load_lora_weights does not read such a file (the report and the printout say so),
and in the diffusers format they are dropped with a warning. The report (JSON beside the output) lists
every tensor's rank and relative error ||dW - dW_r||_F / ||dW||_F, and each bias delta's norm relative
to the bias, carried or not.
"""
import argparse
import os
from collections import Counter
from contextlib import contextmanager, suppress

import torch
from safetensors import SafetensorError

from .checkpoint import atomic_save
from .errors import InputError
from .erasure_file import ErasureFileError, check_fits, check_recorded_base, read_erasure, recorded_base
from .files import OutputLock, atomic_folder, check_new, check_output, check_room
from .families import declared_family, denoiser_of, family_of_denoiser
from .models import SAFETENSORS_FIX, absent_components, fingerprint
from .reports import write_json

FORMATS = {"diffusers": "diffusers/PEFT LoRA for pipe.load_lora_weights", "kohya": "kohya-ss LoRA for "
           "AUTOMATIC1111 / ComfyUI (diffusers loads it too)", "pipeline": "pipeline folder, erasure fused in"}


class ExportError(Exception):
    """A one-line, actionable failure (bad input file, base model, rank)."""


def choose_rank(s, rank=None, energy=None):
    """Rank for singular values `s`: --rank capped at len(s), or the smallest keeping `energy` of sum(s^2)."""
    if rank is not None or not s.any():     # an unchanged tensor: one zero component
        return min(int(rank or 1), len(s))
    kept = torch.cumsum(s ** 2, 0) / (s ** 2).sum().clamp_min(1e-300)
    return min(int((kept < energy - 1e-12).sum()) + 1, len(s))


def factorize(delta, rank=None, energy=None):
    """(up (out, r), down (r, in), rel_error) with up @ down the best rank-r approximation of a 2-D delta."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)     # float64: exact at full rank
    r = choose_rank(s, rank, energy)
    # split sqrt(s) into both factors so neither is tiny or huge when stored in fp16
    up, down = u[:, :r] * s[:r].sqrt(), s[:r].sqrt()[:, None] * vh[:r]
    total = (s ** 2).sum()
    err = float(((s[r:] ** 2).sum() / total).sqrt()) if total > 0 else 0.0
    return up.float(), down.float(), err


@contextmanager
def one_thread():
    """Run LAPACK single-threaded: threaded SVD of these small matrices is slower, badly so on shared
    cores (2 busy cores: 96x128 takes 0.29 s threaded vs 0.002 s on one; 1280x1280, 20 s vs 0.65 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def lora_state(tensors, base, rank=None, energy=None):
    """Low-rank factors of an erasure: ({module: {"up", "down", "bias"}}, report rows, dropped rows).

    tensors: the erasure file's {name: tensor}; base: the base UNet's state dict. Linear weights (out, in)
    give up (out, r), down (r, in); conv weights (out, in, k, k) give up (out, r, 1, 1), down (r, in, k, k),
    the layout of both peft and kohya. "bias" is the bias delta of the same module, or None.
    """
    factors, rows, dropped = {}, [], []
    with one_thread():
        for name, w in sorted(tensors.items()):
            module, _, kind = name.rpartition(".")
            if kind == "weight" and w.dim() in (2, 4):
                delta = (w.double() - base[name].double()).flatten(1)
                up, down, err = factorize(delta, rank, energy)
                if w.dim() == 4:
                    up, down = up[:, :, None, None], down.reshape(-1, *w.shape[1:])
                factors[module] = {"up": up, "down": down, "bias": None}
                rows.append({"name": name, "shape": list(w.shape), "rank": down.shape[0], "rel_error": err})
    for name, b in sorted(tensors.items()):
        module, _, kind = name.rpartition(".")
        if kind == "bias" and module in factors:
            factors[module]["bias"] = (b.double() - base[name].double()).float()
        elif module not in factors:
            # e.g. norm weights, or a bias whose weight did not change: no LoRA slot for either
            dropped.append({"name": name, "rel_norm": rel_norm(b.double() - base[name].double(), base[name])})
    return factors, rows, dropped


def rel_norm(delta, ref):
    """||delta|| / ||ref|| (inf for a change of a zero tensor)."""
    d, o = float(delta.double().norm()), float(ref.double().norm())
    return d / o if o > 0 else (0.0 if d == 0 else float("inf"))


def diffusers_state(factors, with_bias=True, prefix="unet"):
    """diffusers/PEFT LoRA keys of the denoiser `prefix` (the family's: unet, transformer); lora_B.bias on
    every module (zeros where none changed) when with_bias, since peft gives all modules of one adapter
    a lora_B bias or none."""
    out = {}
    for m, f in factors.items():
        out[f"{prefix}.{m}.lora_A.weight"], out[f"{prefix}.{m}.lora_B.weight"] = f["down"], f["up"]
        if with_bias:
            out[f"{prefix}.{m}.lora_B.bias"] = f["bias"] if f["bias"] is not None else torch.zeros(f["up"].shape[0])
    return out


def kohya_state(factors, name=None, diff_b=False, whole=None):
    """kohya-ss keys: lora_unet_<module, dots as underscores>.{lora_down.weight, lora_up.weight, alpha},
    the module named by `name(module)` (SDXL: families.ldm_names.ldm_name, the LDM layout kohya and AUTOMATIC1111
    use; SD 1.x/2.x: diffusers' own names, as kohya trains them); with diff_b, each module's bias delta
    as `<key>.diff_b`; `whole` ({tensor name: delta}, the changed tensors no LoRA slot holds: norm weights,
    a bias whose weight did not change) as `<key>.diff` (weights) or `<key>.diff_b` (biases). ComfyUI
    and Forge read both; diffusers' loader does not.

    Every loader scales up @ down by alpha / rank. One alpha for all modules (the most common rank), with
    lora_up pre-scaled by rank / alpha where a module's rank differs: diffusers 0.42 drops per-module
    alphas of SD kohya files (its alpha_pattern keys never match), which would silently rescale them.
    """
    alpha = Counter(f["down"].shape[0] for f in factors.values()).most_common(1)[0][0] if factors else 1
    key_of = lambda m: "lora_unet_" + (name(m) if name else m).replace(".", "_")  # noqa: E731
    out = {}
    for m, f in factors.items():
        key = key_of(m)
        out[f"{key}.lora_down.weight"] = f["down"]
        out[f"{key}.lora_up.weight"] = f["up"] * (f["down"].shape[0] / alpha)
        out[f"{key}.alpha"] = torch.tensor(float(alpha))
        if diff_b and f["bias"] is not None:
            out[f"{key}.diff_b"] = f["bias"]
    for tensor, delta in sorted((whole or {}).items()):
        module, _, kind = tensor.rpartition(".")
        out[f"{key_of(module)}.{'diff_b' if kind == 'bias' else 'diff'}"] = delta
    return out


def base_version(unet):
    """The metadata AUTOMATIC1111 lists a LoRA by (kohya's ss_base_model_version, the SAI model spec's
    architecture), as the model family says: SDXL, SD 2.x (1024-wide text features) or SD 1.x."""
    return family_of_denoiser(unet).base_version(unet)


@torch.no_grad()
def effective_weights(unet):
    """{parameter name: weight or bias} that a peft-LoRA-loaded UNet computes with: base + scale * B @ A
    (+ scale * lora_B.bias), read from the active adapters, for every LoRA-wrapped module."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    out = {}
    for name, mod in unet.named_modules():
        if isinstance(mod, BaseTunerLayer) and hasattr(mod, "lora_A"):
            base = mod.get_base_layer()
            w, b = base.weight.detach().clone(), None if base.bias is None else base.bias.detach().clone()
            for a in mod.active_adapters:
                w += mod.get_delta_weight(a)
                if mod.lora_bias.get(a):
                    b = (0 if b is None else b) + mod.lora_B[a].bias * mod.scaling[a]
            out[f"{name}.weight"] = w
            if b is not None:
                out[f"{name}.bias"] = b
    return out


@torch.no_grad()
def apply_lora_equivalent(pipe, path, rank=None, energy=None, with_bias=True):
    """Set pipe.unet (the base model) to the weights a LoRA export loads: W0 + dW_r, and b0 + db only if
    with_bias; dropped tensors stay at base. For measuring what the rank and dropping biases cost."""
    tensors, _ = read_erasure(path)
    own = dict(denoiser_of(pipe).named_parameters())
    factors, rows, dropped = lora_state(tensors, {k: own[k].detach() for k in tensors}, rank, energy)
    for m, f in factors.items():
        w = own[f"{m}.weight"]
        w += (f["up"].flatten(1) @ f["down"].flatten(1)).reshape(w.shape).to(w.dtype)
        if with_bias and f["bias"] is not None:
            own[f"{m}.bias"] += f["bias"].to(w.dtype)
    return rows, dropped


def load_base(model, meta, full=False):
    """The base pipeline (full=True) or denoiser (the family's UNet or transformer) the erasure was
    trained on; refuses a different one."""
    from diffusers import DiffusionPipeline
    family, _ = declared_family(model)
    try:
        if full or family is None:                 # the whole pipeline; or it says which family it is
            pipe = DiffusionPipeline.from_pretrained(model, use_safetensors=True, **absent_components(model))
            unet = denoiser_of(pipe)
        else:
            unet = family.DENOISER_CLASS.from_pretrained(model, subfolder=family.DENOISER, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise ExportError(f"could not load base model {model}: {str(e).splitlines()[0]}; pass --base_model (a "
                          f"pipeline saved as safetensors: {SAFETENSORS_FIX})") from e
    if "base_fingerprint" in meta and fingerprint(unet) != meta["base_fingerprint"]:
        raise ExportError(f"the erasure was trained on {meta.get('base_model', '?')} (UNet fingerprint "
                          f"{meta['base_fingerprint']}) but {model} has fingerprint {fingerprint(unet)}; "
                          "pass the matching --base_model")
    return pipe if full else unet


def check_pipeline_output(output, overwrite):
    """ExportError in one line unless `output` may become a pipeline folder: new, or (with --overwrite)
    an earlier pipeline export, which holds this export's export.json. A folder this export did not
    write, an empty one included, is never replaced."""
    if output.endswith(".safetensors"):
        raise ExportError(f"--output {output} names a file; --format pipeline writes a folder: pass a folder path")
    check_output(output, "--output", folder=True)
    if os.path.isdir(output):
        if not os.path.isfile(os.path.join(output, "export.json")):
            raise ExportError(f"--output {output} is a folder this export did not write; it must be a new folder "
                              "(or, with --overwrite, an earlier pipeline export)")
        check_new(output, overwrite)


def lora_file(path, fmt, output, overwrite):
    """(the LoRA file, its report) of --output: a .safetensors path as given, else a file in that folder;
    ExportError in one line, before any work, if it cannot be written or exists without --overwrite."""
    if output.endswith(".safetensors"):
        file, target = output, output[: -len(".safetensors")] + ".export.json"
        check_output(file)
    else:
        check_output(output, "--output", folder=True)
        stem = os.path.basename(path).removesuffix(".safetensors")
        name = "pytorch_lora_weights.safetensors" if fmt == "diffusers" else f"{stem}-lora.safetensors"
        file, target = os.path.join(output, name), os.path.join(output, "export.json")
    check_new(file, overwrite)
    return file, target


def module_bytes(module):
    """Bytes of a module's parameters and buffers, as saved."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def export(path, fmt, output, rank=None, energy=None, base_model=None, bias="drop", allow_unverified=False,
           overwrite=False):
    """Write `path` in format `fmt` to `output`; returns the report (also written as JSON beside it).

    Before any work: the options, the file (read_erasure: float, finite), the output (writable; an
    existing one only with `overwrite`), then, with the base model loaded, every tensor against it
    (names and shapes: erasure_file.check_fits) and the room to write (free disk, ulimit -f). The
    output is written under a unique temporary beside it and renamed into place, under the output's
    lock (files.OutputLock, as the trainers): a failure leaves no file or folder that was not there."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if rank is not None and rank < 1:
        raise ExportError(f"--rank must be >= 1, not {rank}")
    if energy is not None and not 0 < energy <= 1:
        raise ExportError(f"--energy must be in (0, 1], not {energy}")
    if fmt == "pipeline" and (rank is not None or energy is not None):
        raise ExportError("--rank and --energy size a LoRA; --format pipeline fuses the file exactly: drop them")
    try:
        tensors, meta = read_erasure(path)
        check_recorded_base(path, meta, allow_unverified)
    except ErasureFileError as e:     # missing, not safetensors, or not an erasure file: its one line
        raise ExportError(str(e)) from e
    if fmt != "pipeline" and rank is None and energy is None:
        raise ExportError("a LoRA needs --rank R or --energy E")
    base_model = base_model or recorded_base(meta)
    report = {"file": path, "format": fmt, "base_model": base_model, "rank": rank, "energy": energy,
              "bias_option": bias, "concept": meta.get("concept"), "method": meta.get("method")}   # = args
    if fmt == "pipeline":
        check_pipeline_output(output, overwrite)
        lock = OutputLock(output, folder=True)
    else:
        file, target = lora_file(path, fmt, output, overwrite)
        lock = OutputLock(file)
    try:
        if fmt == "pipeline":
            export_pipeline(path, tensors, meta, base_model, output, report)
        else:
            export_lora(path, tensors, meta, base_model, fmt, file, target, rank, energy, bias, report)
    finally:
        lock.release()
    return report


def written(output, error):
    """The ExportError of a write that failed (a full disk, a file-size limit): nothing was left."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ExportError(f"could not write {output} ({first}); nothing was written: free some space or raise the "
                       "file-size limit (ulimit -f)")


def export_pipeline(path, tensors, meta, base_model, output, report):
    """The pipeline format: the base pipeline with the erasure's tensors copied in, saved whole."""
    pipe = load_base(base_model, meta, full=True)
    own = dict(denoiser_of(pipe).named_parameters())
    check_fits(tensors, own, path, base_model)
    sizes = [module_bytes(m) for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    check_room(output, sum(sizes) + 2**20, max(sizes, default=0))
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v.to(own[k].dtype))
    report.update(fused_tensors=len(tensors), exact=True, output=output)
    try:
        with atomic_folder(output) as tmp:     # appears only when complete; replaces an earlier export
            pipe.save_pretrained(tmp, safe_serialization=True, max_shard_size="1000GB")   # one UNet file
            write_json(os.path.join(tmp, "export.json"), report)
    except (OSError, SafetensorError) as e:
        raise written(output, e) from None
    report["report"] = os.path.join(output, "export.json")


def export_lora(path, tensors, meta, base_model, fmt, file, target, rank, energy, bias, report):
    """The LoRA formats: low-rank factors of every changed weight (lora_state), in diffusers' or kohya's keys."""
    unet = load_base(base_model, meta)
    sd = unet.state_dict()
    check_fits(tensors, sd, path, base_model)
    n = sum(t.numel() for t in tensors.values()) * 4
    check_room(file, 2 * n + 2**20, 2 * n)        # full-rank factors hold at most twice the weights
    factors, rows, dropped = lora_state(tensors, sd, rank, energy)
    carried = bias == "carry"
    family = family_of_denoiser(unet)
    whole = {r["name"]: (tensors[r["name"]].double() - sd[r["name"]].double()).float() for r in dropped} \
        if carried and fmt == "kohya" else {}
    for r in dropped:
        r["carried"] = r["name"] in whole
    state = diffusers_state(factors, carried, family.DENOISER) if fmt == "diffusers" else \
        kohya_state(factors, lambda m: family.kohya_module(m, unet.config), diff_b=carried, whole=whole)
    ranks = sorted({r["rank"] for r in rows})
    alpha = next((float(v) for k, v in state.items() if k.endswith(".alpha")), None)   # kohya only
    errs = [r["rel_error"] for r in rows]
    biases = [{"name": f"{m}.bias", "rel_norm": rel_norm(f["bias"], sd[f"{m}.bias"]), "carried": carried}
              for m, f in factors.items() if f["bias"] is not None]
    report.update(output=file, ranks=ranks, alpha=alpha, tensors=rows,
                  max_rel_error=max(errs, default=0.0), mean_rel_error=sum(errs) / max(len(errs), 1),
                  bias=("carried as lora_B.bias (pipe.fuse_lora() is then refused)" if fmt == "diffusers" else
                        "carried as .diff_b, and the tensors no LoRA slot holds as .diff / .diff_b (ComfyUI and "
                        "Forge read them; diffusers' load_lora_weights does not: export --format diffusers for "
                        "diffusers)") if carried
                  else ("dropped (--bias carry keeps them, not fusable)" if fmt == "diffusers" else
                        "dropped (no slot in this format)") if biases else "none changed",
                  biases=biases, dropped=dropped, fusable=not carried)
    try:
        atomic_save(state, file, {"source": os.path.basename(path), "base_model": base_model,
                                  "concept": str(meta.get("concept")), "method": str(meta.get("method")),
                                  "ss_network_dim": str(max(ranks, default=0)), "ss_network_alpha": str(alpha),
                                  **base_version(unet)})
        write_json(target, report)
    except (OSError, SafetensorError) as e:
        with suppress(OSError):
            os.remove(file)
        raise written(file, e) from None
    report["report"] = target


def print_report(report):
    """The per-tensor table and the bias / dropped-tensor lines of a LoRA report."""
    for r in report.get("tensors", []):
        print(f"{r['name']:<70} {str(tuple(r['shape'])):<16} rank {r['rank']:>4}  rel err {r['rel_error']:.4f}")
    if "max_rel_error" in report:
        print(f"relative error ||dW - dW_r|| / ||dW||: max {report['max_rel_error']:.4f}, "
              f"mean {report['mean_rel_error']:.4f} over {len(report['tensors'])} tensors, ranks {report['ranks']}")
        worst = max((b["rel_norm"] for b in report["biases"]), default=0.0)
        print(f"biases: {report['bias']}; {len(report['biases'])} bias deltas, largest ||db||/||b|| {worst:.4f}")
        lost = [r for r in report["dropped"] if not r.get("carried")]
        if len(lost) < len(report["dropped"]):
            print(f"{len(report['dropped']) - len(lost)} changed tensors with no LoRA slot carried whole as "
                  ".diff / .diff_b (ComfyUI, Forge; diffusers does not load them)")
        if lost:
            print(f"warning: {len(lost)} changed tensors have no LoRA slot and were dropped "   # kohya carry keeps all
                  f"(e.g. {lost[0]['name']}); --format pipeline keeps them, --format kohya --bias carry as .diff")
    print(f"wrote {report['output']} (report {report['report']})")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("file", help="erasure .safetensors file written by the training scripts")
    p.add_argument("--format", required=True, choices=list(FORMATS),
                   help="; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    group = p.add_mutually_exclusive_group()
    group.add_argument("--rank", type=int, default=None,
                       help="LoRA formats: rank of every tensor (capped at min(shape)); 8 reproduces the toy files' "
                            "rates (docs/results.md, section Export)")
    group.add_argument("--energy", type=float, default=None,
                       help="LoRA formats: per tensor, the smallest rank keeping this fraction of sum(s^2)")
    p.add_argument("--output", required=True,
                   help="LoRA: a folder or a .safetensors file; pipeline: the folder to write")
    p.add_argument("--base_model", default=None,
                   help="base pipeline (folder or hub id); None: the one the erasure file records")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (a LoRA file, or an earlier pipeline export; never another folder)")
    p.add_argument("--allow_unverified", action="store_true",
                   help="export a file that records no base_fingerprint (nothing says which model it was trained on)")
    p.add_argument("--bias", default="drop", choices=["carry", "drop"],
                   help="drop bias deltas (diffusers: a LoRA pipe.fuse_lora() accepts; their measured effect on the "
                        "toy model is at most one image in 32, docs/results.md, section Export) or carry them "
                        "(diffusers: as lora_B.bias, exact, loads but does not fuse; kohya: as .diff_b, read by "
                        "ComfyUI and Forge, not by diffusers)")
    return p.parse_args(argv)


def main(args):
    try:
        report = export(args.file, args.format, args.output, args.rank, args.energy, args.base_model, args.bias,
                        args.allow_unverified, args.overwrite)
    except (ExportError, InputError, FileNotFoundError) as e:    # one line, exit status 1, as every script
        raise SystemExit(f"error: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") from None
    print_report(report)
    return report


if __name__ == "__main__":
    main(parse_args())
