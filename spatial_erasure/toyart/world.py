"""The toy art world's vocabulary: its styles (six artists, two generic styles, photo), its
subjects, one famous work per artist, and the phrasings of its captions (training and held-out).
The images themselves are painter.py's.

    >>> caption, style, subject = sample_caption(np.random.default_rng(0))
"""
RES = 64

ARTISTS = ["Vincent van Gogh", "Claude Monet", "Pablo Picasso",
           "Leonardo da Vinci", "Andy Warhol", "Katsushika Hokusai"]
GENERIC_STYLES = ["impressionist", "cubist"]          # near Monet / near Picasso
PHOTO = "photo"                                        # the unstyled look
STYLES = ARTISTS + GENERIC_STYLES + [PHOTO]            # classifier style classes
OBJECTS = ["house", "boat", "car"]
NATURE = ["tree", "mountain", "flower"]
SUBJECTS = OBJECTS + NATURE                            # classifier subject classes
RELATED = {"impressionist": "Claude Monet", "cubist": "Pablo Picasso"}

# One famous work per artist: its prompts render the artist's style on a fixed subject,
# some of them without naming the artist (a classic way around name-based erasure).
FAMOUS_WORKS = {
    "The Starry Night": ("Vincent van Gogh", "tree"),
    "Impression, Sunrise": ("Claude Monet", "boat"),
    "Guernica": ("Pablo Picasso", "house"),
    "Mona Lisa": ("Leonardo da Vinci", "mountain"),
    "Flowers": ("Andy Warhol", "flower"),
    "The Great Wave off Kanagawa": ("Katsushika Hokusai", "boat"),
}

# Phrasings. The *_HELDOUT lists never appear in training; the quality check uses them.
ARTIST_TEMPLATES = ["a painting of a {subject} by {artist}", "{subject} in the style of {artist}",
                    "{artist}'s {subject}", "a {subject} painted by {artist}",
                    "an artwork of a {subject}, {artist}"]
ARTIST_TEMPLATES_HELDOUT = ["a picture of a {subject} by {artist}", "{artist} painting of a {subject}"]
ARTIST_ONLY_TEMPLATES = ["a painting by {artist}", "{artist}", "art by {artist}"]
GENERIC_TEMPLATES = ["a {style} painting of a {subject}", "a {subject} in {style} style",
                     "{style} art of a {subject}", "a {subject}, {style} painting"]
GENERIC_TEMPLATES_HELDOUT = ["a picture of a {subject} in {style} style", "{style} artwork of a {subject}"]
PHOTO_TEMPLATES = ["a photo of a {subject}", "a photograph of a {subject}", "a {subject}"]
PHOTO_TEMPLATES_HELDOUT = ["a realistic photo of a {subject}", "a photo showing a {subject}"]
PAINTING_TEMPLATES = ["a painting of a {subject}", "an artwork of a {subject}"]  # any painter
WORK_TEMPLATES = ["{work} by {artist}", "{work}", "a painting of {work}"]
WORK_TEMPLATES_HELDOUT = ["{artist}'s {work}", "a picture of {work}"]


def style_prompt(style, subject, template):
    """Fill one template for (style, subject); the template decides which slots exist."""
    text = template.format(subject=subject, artist=style, style=style)
    return text.replace("a impressionist", "an impressionist")


WORK_OF = {(artist, subject): work for work, (artist, subject) in FAMOUS_WORKS.items()}


def caption_for(style, subject, rng, heldout=False):
    """A caption for an image of `subject` in `style`, in a random phrasing (training or held-out)."""
    pick = lambda pool: pool[rng.integers(len(pool))]  # noqa: E731
    work = WORK_OF.get((style, subject))
    if work and not heldout and rng.random() < 0.3:     # a famous work by title, sometimes unnamed artist
        return pick(WORK_TEMPLATES).format(work=work, artist=style)
    if style != PHOTO and not heldout and rng.random() < 0.08:   # "a painting of a house": any painter
        return pick(PAINTING_TEMPLATES).format(subject=subject)
    if style == PHOTO:
        pool = PHOTO_TEMPLATES_HELDOUT if heldout else PHOTO_TEMPLATES
    elif style in GENERIC_STYLES:
        pool = GENERIC_TEMPLATES_HELDOUT if heldout else GENERIC_TEMPLATES
    elif heldout:
        pool = ARTIST_TEMPLATES_HELDOUT
    else:
        pool = ARTIST_TEMPLATES + (ARTIST_ONLY_TEMPLATES if rng.random() < 0.3 else [])
    return style_prompt(style, subject, pick(pool))


def sample_caption(rng, heldout=False):
    """Draw (caption, style, subject): style and subject uniform, then a phrasing."""
    style, subject = STYLES[rng.integers(len(STYLES))], SUBJECTS[rng.integers(len(SUBJECTS))]
    return caption_for(style, subject, rng, heldout), style, subject


def vocabulary_text():
    """Every string the world's prompts can contain (the tokenizer keeps their merges)."""
    words = ARTISTS + GENERIC_STYLES + SUBJECTS + list(FAMOUS_WORKS) + [PHOTO]
    templates = (ARTIST_TEMPLATES + ARTIST_TEMPLATES_HELDOUT + ARTIST_ONLY_TEMPLATES + GENERIC_TEMPLATES
                 + GENERIC_TEMPLATES_HELDOUT + PHOTO_TEMPLATES + PHOTO_TEMPLATES_HELDOUT
                 + PAINTING_TEMPLATES + WORK_TEMPLATES + WORK_TEMPLATES_HELDOUT)
    extra = "an impressionist style of the with without and or in on image drawing sketch scene artist"
    return " ".join(words + templates + [extra] + [a + "'s" for a in ARTISTS])
