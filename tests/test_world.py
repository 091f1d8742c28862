import numpy as np
import pytest
from transformers import CLIPTokenizer

from spatial_erasure.models import TOY_MODEL
from spatial_erasure.toyart import painter, world


def test_render_is_seeded_and_shaped():
    a = painter.render("Vincent van Gogh", "house", seed=3)
    b = painter.render("Vincent van Gogh", "house", seed=3)
    c = painter.render("Vincent van Gogh", "house", seed=4)
    assert a.shape == (64, 64, 3)
    assert a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_vocabulary_sizes():
    assert len(world.ARTISTS) >= 6
    assert "Vincent van Gogh" in world.ARTISTS
    assert set(world.RELATED) == {"impressionist", "cubist"}
    assert world.PHOTO in world.STYLES
    assert len(world.OBJECTS) >= 3
    assert len(world.NATURE) >= 3
    assert {a for a, _ in world.FAMOUS_WORKS.values()} == set(world.ARTISTS)


def test_every_style_and_subject_renders_distinct_images():
    imgs = {(s, u): painter.render(s, u, seed=0).astype(float) for s in world.STYLES for u in world.SUBJECTS}
    # the same layout seed in two styles differs clearly (palette + texture), on every subject
    for u in world.SUBJECTS:
        for s1 in world.STYLES:
            for s2 in world.STYLES:
                if s1 < s2:
                    assert np.abs(imgs[s1, u] - imgs[s2, u]).mean() > 10, (s1, s2, u)


def test_heldout_phrasings_never_in_training():
    rng = np.random.default_rng(0)
    train = {world.sample_caption(rng)[0] for _ in range(5000)}
    held = {world.sample_caption(rng, heldout=True)[0] for _ in range(2000)}
    assert not train & held
    assert "The Starry Night" in train
    assert "a photo of a house" in train


def test_unknown_subject_or_style_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown style"):
        painter.render("Rembrandt", "house", seed=0)
    with pytest.raises(ValueError, match="unknown subject"):
        painter.render("photo", "horse", seed=0)


def test_bundled_tokenizer_is_clip_bpe_pruned_to_the_world():
    import os
    folder = os.path.join(TOY_MODEL, "tokenizer")
    assert {"vocab.json", "merges.txt"} <= set(os.listdir(folder))
    tok = CLIPTokenizer.from_pretrained(folder)
    assert len(tok) < 1000
    assert tok.model_max_length == 24
    ids = tok("a painting of a house by Vincent van Gogh").input_ids
    toks = tok.convert_ids_to_tokens(ids)
    assert toks == ["<|startoftext|>", "a</w>", "painting</w>", "of</w>", "a</w>", "house</w>", "by</w>",
                    "vincent</w>", "van</w>", "gogh</w>", "<|endoftext|>"]
    # the same pieces as the full 49,408-token CLIP tokenizer (checked against it when the folder was built)
    assert tok.convert_ids_to_tokens(tok("Katsushika Hokusai").input_ids)[1:-1] == [
        "katsu", "shi", "ka</w>", "ho", "ku", "sai</w>"]
    assert tok.convert_ids_to_tokens(tok("The Great Wave off Kanagawa").input_ids)[1:-1] == [
        "the</w>", "great</w>", "wave</w>", "off</w>", "kan", "agawa</w>"]
    # an unseen word still tokenizes, through byte-level symbols
    assert tok.decode(tok("Rembrandt, 1642").input_ids, skip_special_tokens=True) == "rembrandt , 1 6 4 2"
    longest = max(len(tok(world.sample_caption(np.random.default_rng(i))[0]).input_ids) for i in range(300))
    assert longest <= tok.model_max_length
