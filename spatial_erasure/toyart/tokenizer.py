"""Build the toy model's CLIPTokenizer folder from CLIP's own BPE merges, pruned to the world's words.

The full CLIP vocabulary (49,408 tokens) would make the text encoder's embedding 91% of its
weights. We keep every byte-level symbol (so any string still tokenizes) plus only the merges
that the toy world's words use, in CLIP's order, so the tokenizer is a real CLIP BPE tokenizer
with a ~1k vocabulary. The merges come from `bpe_simple_vocab_16e6.txt.gz`, the CLIP vocabulary
file shipped inside the `open_clip_torch` wheel (install with `pip install --no-deps open_clip_torch`).

    python -m spatial_erasure.toyart.tokenizer --output models/toyart-sd/tokenizer
"""
import gzip
import importlib.util
import json
import os
import re
import shutil
import tempfile

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from .. import cli
from .world import vocabulary_text

CLIP_MERGES = 49152 - 256 - 2       # CLIP keeps the first 48,894 merges of the file
# CLIP's pre-tokenizer pattern, with \p{L} / \p{N} spelled for Python's re
PATTERN = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+""",
                     re.IGNORECASE)


def default_bpe_path():
    spec = importlib.util.find_spec("open_clip")   # locates the package without importing it
    if spec is None:
        raise SystemExit("open_clip_torch is not installed: run `pip install --no-deps open_clip_torch` "
                         "or pass --bpe path/to/bpe_simple_vocab_16e6.txt.gz")
    return os.path.join(spec.submodule_search_locations[0], "bpe_simple_vocab_16e6.txt.gz")


def used_merges(words, ranks):
    """Run CLIP's BPE on each word; return the set of merges it applied."""
    used = set()
    for w in words:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            pairs = [(ranks.get((a, b), 1e12), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == 1e12:
                break
            used.add((parts[i], parts[i + 1]))
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return used


def build(out, bpe_path):
    with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
        merges = [tuple(m.split()) for m in f.read().split("\n")[1:CLIP_MERGES + 1]]
    ranks = {m: i for i, m in enumerate(merges)}
    byte_encoder = bytes_to_unicode()
    text = vocabulary_text().lower()
    words = ["".join(byte_encoder[b] for b in tok.encode("utf-8")) for tok in PATTERN.findall(text)]
    keep = sorted(used_merges(set(words), ranks), key=ranks.get)
    symbols = list(byte_encoder.values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in keep]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    # The classic CLIP tokenizer folder, as in CompVis/stable-diffusion-v1-4/tokenizer.
    tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)) or ".")
    with open(os.path.join(tmp, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(tmp, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in keep) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    with open(os.path.join(tmp, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)
    with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
                   **special}, f, indent=2)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    os.chmod(out, 0o755)                       # mkdtemp made it private
    return CLIPTokenizer.from_pretrained(out)


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--output", required=True, help="folder to write the tokenizer into")
    p.add_argument("--bpe", default=None, help="CLIP BPE file (default: the one inside open_clip_torch)")
    args = p.parse_args(argv)
    tok = build(args.output, args.bpe or default_bpe_path())
    print(f"wrote {args.output}: vocabulary of {len(tok)} tokens")


if __name__ == "__main__":
    main()
