"""How far an erasure file moves the UNet: per-tensor ||dW||, ||W|| and ||dW||/||W||, grouped.

dW = erased tensor - base tensor; every norm is the Frobenius norm, computed in float64 so an
unchanged tensor gives exactly 0. A group's norm is the norm of all its tensors' changes together
(sqrt of the sum of squares), its relative change the group ||dW|| over the group ||W||; the
"mean relative change" is the unweighted mean of the per-tensor ratios.

Groups, as the base's model family names them (spatial_erasure.families): for a UNet, block
(`down.0` .. `mid` .. `up.3`, `other` for conv_in, time embedding, conv_out) and projection (`to_q`,
`to_k`, `to_v`, `to_out` = to_out.0 weight + bias, of attn1 and attn2 alike: the per-tensor
`attention` column tells them apart; `other` for every non-attention tensor, e.g. the resnets that
esd-u trains); for SD3 joint blocks `joint.N`, for Flux `double.N` / `single.N`, and the text
stream's projections `add_q_proj`, `add_k_proj`, `add_v_proj`, `to_add_out` beside the image stream's.

Tensors are not parameters: on SD 1.4, esd-x trains 16 attn2 blocks x {to_q.weight, to_k.weight,
to_v.weight, to_out.0.weight, to_out.0.bias} = 80 tensors holding 43,962,560 parameters (44.0M;
the paper's "80 parameters" counts tensors). `reference(["esd-x"])` recomputes both numbers.
"""
import math
import os
import re
import warnings

from ..architectures import count_parameters
from ..erasure_file import ErasureMismatch, check_fits, read_erasure, recorded_base
from ..families import declared_family, family_of_denoiser, sd
from ..models import ModelLoadError, fingerprint, hub_unreachable
from ..selection import count, select_parameters

ROW_COLUMNS = ["name", "block", "attention", "projection", "shape", "parameters", "dW_norm", "W_norm",
               "rel_change", "dW_max"]
GROUP_COLUMNS = ["tensors", "parameters", "dW_norm", "W_norm", "rel_change", "mean_rel_change"]


def block_of(name, family=sd):
    """The block group of a tensor name, as its model family says (families.sd: 'down.1', 'mid', 'up.2',
    'other'; SD3: 'joint.3'; Flux: 'double.3', 'single.5')."""
    return family.block_of(name)


def projection_of(name, family=sd):
    """The attention projection of a tensor name (family.PROJECTIONS), else 'other'."""
    return family.projection_of(name)


def attention_of(name):
    """The attention module of a tensor: 'attn1' (self-), 'attn2' (cross-attention; SD3.5's second image
    attention), 'attn' (an MMDiT's joint attention) or '' outside attention."""
    m = re.search(r"\.(attn\d?)\.", f".{name}")
    return m.group(1) if m else ""


def block_order(block, family=sd):
    """Sort key: the family's block kinds in order (SD: down blocks by depth, mid, up blocks by depth), then other."""
    kind, _, depth = block.partition(".")
    return (family.BLOCKS.index(kind) if kind in family.BLOCKS else len(family.BLOCKS), int(depth or 0))


def tensor_changes(base_state, tensors, family=sd):
    """One row per tensor of an erasure file against the base denoiser's state dict (name -> tensor).

    Raises ErasureMismatch when a key is not a base parameter or a shape differs."""
    check_fits(tensors, base_state, "the erasure file")
    rows = []
    for name in sorted(tensors):
        w = base_state[name].detach().double().cpu()
        dw = tensors[name].detach().double().cpu() - w
        dw_norm, w_norm = float(dw.norm()), float(w.norm())
        rows.append({"name": name, "block": block_of(name, family), "attention": attention_of(name),
                     "projection": projection_of(name, family), "shape": "x".join(map(str, w.shape)),
                     "parameters": w.numel(), "dW_norm": dw_norm, "W_norm": w_norm,
                     "rel_change": dw_norm / w_norm if w_norm > 0 else None,   # a zero base tensor has no ratio
                     "dW_max": float(dw.abs().max()) if dw.numel() else 0.0})
    return rows


def group(rows, key, family=sd):
    """Rows aggregated by rows[key] (e.g. 'block', 'projection'): counts, group norms, both relative changes."""
    acc = {}
    for r in rows:
        g = acc.setdefault(r[key], {key: r[key], "tensors": 0, "parameters": 0, "dw2": 0.0, "w2": 0.0, "rels": []})
        g["tensors"] += 1
        g["parameters"] += r["parameters"]
        g["dw2"] += r["dW_norm"] ** 2
        g["w2"] += r["W_norm"] ** 2
        if r["rel_change"] is not None:
            g["rels"].append(r["rel_change"])
    order = {"block": lambda b: block_order(b, family), "projection": family.PROJECTIONS.index}.get(key, str)
    out = []
    for v in sorted(acc, key=order):
        g = acc[v]
        dw, w = math.sqrt(g["dw2"]), math.sqrt(g["w2"])
        out.append({key: v, "tensors": g["tensors"], "parameters": g["parameters"], "dW_norm": dw, "W_norm": w,
                    "rel_change": dw / w if w > 0 else None,
                    "mean_rel_change": sum(g["rels"]) / len(g["rels"]) if g["rels"] else None})
    return out


def totals(rows):
    """Whole-file summary: tensor and parameter counts, total ||dW|| and ||W||, mean and max relative change."""
    t = group([{**r, "all": "all"} for r in rows], "all")[0]     # rows is never empty: read_erasure checks
    t.pop("all")
    ranked = [r for r in rows if r["rel_change"] is not None]
    top = max(ranked, key=lambda r: r["rel_change"]) if ranked else None
    return {**t, "tensors_changed": sum(r["dW_norm"] > 0 for r in rows),
            "parameters_changed": sum(r["parameters"] for r in rows if r["dW_norm"] > 0),
            "max_rel_change": top["rel_change"] if top else None, "max_rel_tensor": top["name"] if top else None}


def expected_tensors(unet, method):
    """(tensors, parameters) that `method` trains on `unet` (works on a meta-device UNet)."""
    return count(select_parameters(unet, method))


def _first_line(e):
    return (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")


def load_base_unet(base):
    """The denoiser of a pipeline folder or hub id, of the class and subfolder its family names (or a bare
    UNet folder); ModelLoadError with one line otherwise."""
    from diffusers.utils import logging as diffusers_logging
    base = str(base)
    local = os.path.isdir(base)
    if not local and (base.startswith((".", "/", "~")) or base.count("/") != 1):
        raise ModelLoadError(f"base model folder {base} does not exist; pass --base_model with the pipeline folder "
                             "or hub id the erasure file was trained on")
    family = declared_family(base)[0] or sd            # a bare UNet folder declares no pipeline
    sub = family.DENOISER
    bare = local and os.path.isfile(os.path.join(base, "config.json")) and not os.path.isdir(os.path.join(base, sub))
    diffusers_logging.disable_progress_bar()
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)   # a failed load logs, then raises: say it once
    try:
        with warnings.catch_warnings():       # hub client deprecation warnings are not the user's to fix
            warnings.simplefilter("ignore")
            unet = family.DENOISER_CLASS.from_pretrained(base, **({} if bare else {"subfolder": sub}),
                                                         use_safetensors=True)
    except (OSError, ValueError) as e:
        if local:
            raise ModelLoadError(f"could not load the base UNet in {base}: {_first_line(e)}; pass --base_model with "
                                 "the pipeline folder the erasure file was trained on") from e
        raise hub_unreachable(base, e, "the base UNet of ") from e
    finally:
        diffusers_logging.set_verbosity(level)
    return unet.eval()


def analyse(path, base_model=None, check_base=True, cache=None):
    """Everything the report says about one erasure file; `cache` (a dict) shares base UNets across calls.

    Refuses a base whose fingerprint differs from the recorded one unless check_base=False."""
    tensors, meta = read_erasure(path)
    base = str(base_model or recorded_base(meta))
    cache = {} if cache is None else cache
    key = os.path.realpath(base) if os.path.isdir(base) else base     # one load per base, however it is spelled
    if key not in cache:
        unet = load_base_unet(base)
        cache[key] = {"fingerprint": fingerprint(unet), "unet": unet, "family": family_of_denoiser(unet)}
    entry = cache[key]
    recorded = meta.get("base_fingerprint")
    if check_base and recorded and recorded != entry["fingerprint"]:
        raise ErasureMismatch(f"{path} was trained on {meta.get('base_model', '?')} (UNet fingerprint {recorded}) but "
                              f"{base} has fingerprint {entry['fingerprint']}; pass the matching --base_model "
                              "(or --no_check_base)")
    family = entry["family"]
    rows = tensor_changes(entry["unet"].state_dict(), tensors, family)
    method = meta.get("method")
    try:
        selected = select_parameters(entry["unet"], method)
        n, p = count(selected)
        expected = {"tensors": n, "parameters": p, "file_matches_selection": set(selected) == set(tensors)}
    except ValueError:      # an unknown or missing method: nothing to compare against
        expected = None
    return {"file": str(path), "label": os.path.basename(str(path)).removesuffix(".safetensors"),
            "method": method, "concept": meta.get("concept"), "preset": meta.get("preset"),
            "base_model": base, "base_fingerprint": entry["fingerprint"], "recorded_fingerprint": recorded,
            "fingerprint_checked": bool(check_base and recorded),
            "recorded_counts": {"tensors": meta.get("tensors_changed"), "parameters": meta.get("parameters_changed")},
            "family": family.KEY, "expected": expected, "totals": totals(rows),
            "by_block": group(rows, "block", family), "by_projection": group(rows, "projection", family), "rows": rows}


def comparison(results):
    """One row per file: totals and ratios of total ||dW|| and mean relative change against the first file."""
    first = results[0]["totals"]
    ratio = lambda a, b: a / b if a is not None and b else None   # noqa: E731
    return [{"file": r["label"], "method": r["method"], "tensors": r["totals"]["tensors"],
             "parameters": r["totals"]["parameters"], "dW_norm": r["totals"]["dW_norm"],
             "dW_ratio": ratio(r["totals"]["dW_norm"], first["dW_norm"]),
             "mean_rel_change": r["totals"]["mean_rel_change"],
             "mean_rel_ratio": ratio(r["totals"]["mean_rel_change"], first["mean_rel_change"])} for r in results]


def reference(methods, family=sd):
    """(architecture name, {method: {tensors, parameters}}): the counts on the family's real-size
    architecture (family.REFERENCE: SD 1.4, SDXL, SD3 medium, Flux.1 dev), on the meta device (no memory)."""
    counts = count_parameters(family.REFERENCE)
    return family.REFERENCE, {m: counts[m] for m in methods if m in counts}
