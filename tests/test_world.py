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


def test_world_of_the_bundled_toy_model_is_toy_and_the_worlds_keep_their_published_values():
    from types import SimpleNamespace

    from spatial_erasure.models import load_pipeline
    from spatial_erasure.prompts import retain_prompts
    from spatial_erasure.sampling import sampling_defaults
    from spatial_erasure.worlds import REAL, TOY, world_of
    assert world_of(load_pipeline(TOY_MODEL)) is TOY
    assert world_of(SimpleNamespace(tokenizer=range(49408))) is REAL, "CLIP's full tokenizer: real SD"
    assert (TOY.name, TOY.retain_phrasings, REAL.name, REAL.retain_phrasings) == ("toy", 1, "real", 2)
    assert sampling_defaults(TOY) == (20, 5.0)
    assert sampling_defaults(REAL) == (50, 7.5)
    assert sampling_defaults(REAL, 10, 3.0) == (10, 3.0)
    assert retain_prompts("Vincent van Gogh", TOY)[:2] == ["a painting of a house by Claude Monet",
                                                           "a painting of a boat by Claude Monet"]
    assert len(retain_prompts("Vincent van Gogh", TOY)) == 7 * 6
    assert len(retain_prompts("Rembrandt", REAL)) == 9 * 2 * 6
