"""GPU memory of ESD training on a real-size flow transformer, projected from its config (no weights, no GPU).

    python bench/flow_memory.py                                      # Flux.1-dev, 512 and 1024 px
    python bench/flow_memory.py --architectures flux-dev sd3-medium --output results/bench/flow_memory

Parameter and trained-tensor counts come from the meta device (spatial_erasure.architectures); the
rest is arithmetic on how this toolkit's trainer holds a model:
- the frozen transformer in bf16 (2 B a parameter), or 8-bit / 4-bit weights (1 B, 0.5 B), or streamed
  from the CPU by group offloading (about two blocks on the GPU);
- the trained tensors in fp32 (4 B), their gradients (4 B), Adam's two moments (8 B), and their bf16
  originals for the frozen teacher (2 B): only the trained tensors are copied, never the transformer;
- activations under gradient checkpointing: each block's bf16 input (2 B x tokens x width) kept for the
  backward pass, plus one block's recomputed activations (about 34 B x tokens x width: q, k, v,
  attention output, the MLP's 4x hidden before and after its activation, norms and modulations; attention
  by SDPA, no tokens^2 matrix), at batch 1 (the reference ESD's);
- the text encoders (T5-XXL is 9.5 GB in bf16) offloaded after the prompts are encoded, the VAE unused
  (ESD trains on latents it samples itself); 1.5 GiB for the CUDA context and workspace.
Tokens: (resolution / 8 / 2)^2 image patches plus 512 T5 tokens (Flux; SD3: 333 = 77 CLIP + 256 T5).
A method fits a GPU when the total stays under 95% of its memory; where bf16 does not, the table names
the changes that would (none of the three is in the trainer yet: they are what it would take).
Writes flow_memory.{json,md}. bench/gpu_check.sh sets the SD3-medium projection beside bench/real_size.py's
measured peak when a GPU is lent (not yet run: no GPU so far).
"""
import argparse
import os
import sys

from spatial_erasure.architectures import FLOW_ARCHITECTURES, count_parameters
from spatial_erasure.reports import atomic_write_text, write_json

GIB = 2 ** 30
WEIGHT_BYTES = {"bf16": 2.0, "8-bit": 1.0, "4-bit": 0.5}
TRAINED_BYTES = 4 + 4 + 8 + 2         # fp32 tensor, fp32 grad, Adam m and v, bf16 original for the teacher
BLOCK_ACTIVATION_BYTES = 34           # one block's recomputed activations, per token and channel (bf16)
CONTEXT_GIB = 1.5
TEXT_TOKENS = {"flux": 512, "sd3": 77 + 256}
GPUS = {"80 GB": 80e9, "24 GB": 24e9}


def layout(name):
    """(width, blocks, text tokens) of a flow transformer config."""
    arch = FLOW_ARCHITECTURES[name]
    cfg = arch.transformer
    width = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    blocks = cfg["num_layers"] + cfg.get("num_single_layers", 0)
    return width, blocks, TEXT_TOKENS[arch.family]


def project(counts, name, method, resolution, weights="bf16", offload=False):
    """{part: bytes} of one training run; `counts` from count_parameters(name)."""
    width, blocks, text = layout(name)
    tokens = (resolution // 16) ** 2 + text
    total, trained = counts["total"], counts[method]["parameters"]
    frozen = (total - trained) * WEIGHT_BYTES[weights]
    if offload:                            # group offloading: about two blocks' weights resident at a time
        frozen *= 2 / blocks
    parts = {"frozen weights": frozen,
             "trained tensors, grads, Adam, originals": trained * TRAINED_BYTES,
             "checkpointed block inputs": 2 * tokens * width * blocks,
             "one block recomputed": BLOCK_ACTIVATION_BYTES * tokens * width,
             "CUDA context": CONTEXT_GIB * GIB}
    parts["total"] = sum(parts.values())
    return parts


def fits(total, gpu_bytes):
    return total <= 0.95 * gpu_bytes


OPTIONS = (("bf16", {}), ("8-bit base", {"weights": "8-bit"}), ("4-bit base", {"weights": "4-bit"}),
           ("group offload", {"offload": True}))


def how_it_fits(counts, name, method, resolution, gpu_bytes):
    """'bf16' when the plain run fits; else the changes that make it fit (8-bit or 4-bit frozen weights,
    group offloading), comma-separated; 'no' when none does (the trained state alone is too large)."""
    ok = [label for label, kw in OPTIONS if fits(project(counts, name, method, resolution, **kw)["total"], gpu_bytes)]
    return "bf16" if "bf16" in ok else ", ".join(ok) or "no"


def rows(name, resolutions):
    counts = count_parameters(name)
    out = []
    for method in (m for m in counts if m != "total"):
        for res in resolutions:
            p = project(counts, name, method, res)
            row = {"architecture": name, "method": method, "resolution": res,
                   "trained_parameters": counts[method]["parameters"],
                   **{k: round(v / GIB, 2) for k, v in p.items()}}
            for gpu, size in GPUS.items():
                row[gpu] = how_it_fits(counts, name, method, res, size)
            out.append(row)
    return out


def markdown(table):
    cols = ["architecture", "method", "resolution", "trained_parameters", "frozen weights",
            "trained tensors, grads, Adam, originals", "checkpointed block inputs", "one block recomputed",
            "total", *GPUS]
    lines = ["| " + " | ".join(c if c in GPUS or c in ("architecture", "method", "resolution", "trained_parameters")
                                else c + " (GiB)" for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in table:
        lines.append("| " + " | ".join(f"{r[c]:,}" if c == "trained_parameters" else str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--architectures", nargs="+", default=["flux-dev"], choices=list(FLOW_ARCHITECTURES))
    p.add_argument("--resolutions", nargs="+", type=int, default=[512, 1024])
    p.add_argument("--output", default=os.path.join("results", "bench", "flow_memory"))
    args = p.parse_args(argv)
    if any(r <= 0 or r % 16 for r in args.resolutions):
        p.error(f"--resolutions must be positive multiples of 16 (got {args.resolutions})")
    return args


def main(args):
    table = [r for name in args.architectures for r in rows(name, args.resolutions)]
    os.makedirs(args.output, exist_ok=True)
    text = markdown(table)
    write_json(os.path.join(args.output, "flow_memory.json"), table)
    atomic_write_text(os.path.join(args.output, "flow_memory.md"), text)
    print(text, end="")
    print(f"wrote {args.output}/flow_memory.json and flow_memory.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
