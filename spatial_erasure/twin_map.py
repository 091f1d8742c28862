"""The concept's prompts mapped onto their neutral twins in closed form, in every cross-attention key
and value projection: the start of the recommended ESD recipe (no UNet call).

    M = solve_twin_map(pipe, rows, keep=[""] + anchors, res=res)      # (D, D), D the text width
    start_from_twin_map(st.params, originals, M)                      # attn2.to_k / to_v: W = W0 M

Cross-attention sees a prompt only as the set of its tokens' keys W_k e and values W_v e. If every
token of "a painting of a house by Vincent van Gogh" gives the keys and values of a token of "a
painting of a house", the UNet predicts exactly the twin's noise for every x_t and t. Tokens are
paired by `align_tokens` (the words both prompts share in order, the concept's words with the
twin's padding), and one linear map M of the text encoder's output is solved for all prompts at
once, in the spirit of UCE (Gandikota et al. 2024):

    min_M  mean_i |M a_i - b_i|^2 + keep_weight * mean_j |M c_j - c_j|^2 + ridge * |M - I|^2

a_i the prompts' token embeddings, b_i their paired twin tokens, c_j the tokens of prompts to keep
(the empty prompt, the unconditional branch of guidance, with null_weight; anchors). Then W = W0 M
for every to_k and to_v, the same M for all: M acts on the text embedding. The closed form fits the
prompts it is given; the gradient steps that follow (objectives.twin_loss) fit the UNet's output.
Measured on the toy model in docs/results.md.
"""
import difflib

import torch

from .prompts import encode


def align_tokens(ids, twin_ids, eos):
    """A pairing of the L token positions of a prompt with the L of its twin (both padded to L):
    `pairs[i]` is the twin position of prompt position i. The tokens the two share are paired in
    order (difflib's matching blocks), the other content tokens in order, and what is left (the
    concept's words, the rest of the padding) with the other side's padding."""
    n = len(ids)
    end, twin_end = ids.index(eos) + 1, twin_ids.index(eos) + 1          # BOS .. EOS
    pairs = {}
    for a, b, size in difflib.SequenceMatcher(a=ids[:end], b=twin_ids[:twin_end], autojunk=False).get_matching_blocks():
        pairs.update({a + k: b + k for k in range(size)})
    left = [i for i in range(end) if i not in pairs]
    twin_left = sorted(set(range(twin_end)) - set(pairs.values()))
    pairs.update(zip(left, twin_left))
    rest = left[len(twin_left):] + list(range(end, n))                 # the concept's extra words, then padding
    twin_rest = twin_left[len(left):] + list(range(twin_end, n))
    pairs.update(zip(rest, twin_rest))
    return [pairs[i] for i in range(n)]


def token_ids(tokenizer, text):
    return tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids


@torch.no_grad()
def solve_twin_map(pipe, rows, keep, res=None, keep_weight=1.0, null_weight=10.0, ridge=1e-3):
    """M (D, D) float64 for `rows` [(prompt, twin)] and the prompts to `keep` (the first, "", weighted
    by null_weight, the others by keep_weight): the module docstring's least squares, solved in one
    (D, D) system."""
    prompts, twins = [p for p, _ in rows], [z for _, z in rows]
    emb, twin_emb = encode(pipe, prompts, res).emb.double(), encode(pipe, twins, res).emb.double()
    eos = pipe.tokenizer.eos_token_id
    order = [align_tokens(token_ids(pipe.tokenizer, p), token_ids(pipe.tokenizer, z), eos) for p, z in rows]
    twin_emb = torch.stack([twin_emb[i][order[i]] for i in range(len(rows))])
    a, b = emb.reshape(-1, emb.shape[-1]), twin_emb.reshape(-1, emb.shape[-1])
    d = a.shape[1]
    eye = torch.eye(d, dtype=a.dtype, device=a.device)
    kept = encode(pipe, keep, res).emb.double()                     # (K, L, D): "" first
    cov = lambda x: x.T @ x / len(x)  # noqa: E731
    c = null_weight * cov(kept[0]) + (keep_weight * cov(kept[1:].reshape(-1, d)) if len(kept) > 1 else 0)
    lhs = cov(a) + c + ridge * eye
    rhs = b.T @ a / len(a) + c + ridge * eye
    return torch.linalg.solve(lhs.T, rhs.T).T                       # rhs @ lhs^-1 (lhs is symmetric)


def residual(pipe, rows, m, res=None):
    """How much of the prompts' difference from their twins M leaves: sum |M a - b|^2 / sum |a - b|^2."""
    emb, twin_emb = encode(pipe, [p for p, _ in rows], res).emb.double(), encode(pipe, [z for _, z in rows], res).emb
    eos = pipe.tokenizer.eos_token_id
    twin_emb = torch.stack([twin_emb[i][align_tokens(token_ids(pipe.tokenizer, p), token_ids(pipe.tokenizer, z), eos)]
                            for i, (p, z) in enumerate(rows)]).double()
    a, b = emb.reshape(-1, emb.shape[-1]), twin_emb.reshape(-1, emb.shape[-1])
    return float(((a @ m.T - b) ** 2).sum() / ((a - b) ** 2).sum())


@torch.no_grad()
def start_from_twin_map(params, originals, m):
    """Set every trained attn2.to_k / to_v weight to W0 M (its original times the map); returns their names."""
    names = [n for n in params if n.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))]
    for n in names:
        w0 = originals[n].detach().double()
        params[n].copy_((w0 @ m.to(w0.device)).to(params[n].dtype))
    return names
