"""The toy world's painter: a procedural, seeded 64x64 image of a *subject* (a silhouette on a
sky/ground scene) rendered in a *style* (a palette plus a texture that survives crops and a 4x VAE).
Artist styles are distinct, classifiable textures, so erasing "Vincent van Gogh" can be measured:
the bundled classifier says whether the swirl texture is still there. The vocabulary (styles,
subjects, captions) is world.py's.

    >>> image = render("Claude Monet", "house", seed=0)   # uint8, (64, 64, 3)
"""
import numpy as np

from .world import RES, STYLES, SUBJECTS, sample_caption

# ----------------------------------------------------------------------------- layout
SKY, GROUND, MAIN, SECOND, ACCENT = range(5)


def _grid():
    y, x = np.mgrid[0:RES, 0:RES].astype(np.float32) / RES
    return y, x


def _layout(subject, rng):
    """Region labels (RES, RES) int8: sky, ground, and three subject parts."""
    y, x = _grid()
    horizon = rng.uniform(0.62, 0.74)
    lab = np.where(y < horizon, SKY, GROUND).astype(np.int8)
    cx, s = rng.uniform(0.38, 0.62), rng.uniform(0.85, 1.15)
    gy = horizon + 0.04
    if subject == "house":
        w, h = 0.40 * s, 0.30 * s
        body = (abs(x - cx) < w / 2) & (y < gy) & (y > gy - h)
        roof = ((y <= gy - h) & (y > gy - h - 0.22 * s)
                & (abs(x - cx) < (w / 2 + 0.05) * (y - (gy - h - 0.22 * s)) / (0.22 * s)))
        door = (abs(x - cx) < 0.05 * s) & (y < gy) & (y > gy - 0.15 * s)
        lab[body], lab[roof], lab[door] = MAIN, SECOND, ACCENT
    elif subject == "boat":
        gy = horizon + 0.10
        top = gy - 0.10 * s
        hull = (y > top) & (y < gy) & (abs(x - cx) < 0.26 * s - (y - top) * 0.9)
        sail = ((y < top) & (y > top - 0.42 * s) & (x > cx + 0.01)
                & (x - cx < 0.28 * s * (y - (top - 0.42 * s)) / (0.42 * s)))
        mast = (abs(x - cx) < 0.012) & (y < top) & (y > top - 0.46 * s)
        lab[hull], lab[sail], lab[mast] = MAIN, SECOND, ACCENT
    elif subject == "car":
        body = (abs(x - cx) < 0.30 * s) & (y < gy - 0.05 * s) & (y > gy - 0.17 * s)
        cabin = (y <= gy - 0.17 * s) & (y > gy - 0.29 * s) & (abs(x - cx) < 0.17 * s - (gy - 0.17 * s - y) * 0.5)
        wheel = np.zeros_like(body)
        for dx in (-0.17, 0.17):
            wheel |= (x - cx - dx * s) ** 2 + (y - gy + 0.05 * s) ** 2 < (0.07 * s) ** 2
        lab[body], lab[cabin], lab[wheel] = MAIN, SECOND, ACCENT
    elif subject == "tree":
        trunk = (abs(x - cx) < 0.045 * s) & (y < gy) & (y > gy - 0.32 * s)
        cy, r = gy - 0.42 * s, 0.22 * s
        crown = ((x - cx) / 1.1) ** 2 + (y - cy) ** 2 < r ** 2
        lab[trunk], lab[crown] = SECOND, MAIN
        for _ in range(3):                                  # fruit / blossom dots
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6) * r
            lab[(x - cx - d * np.cos(a)) ** 2 + (y - cy - d * np.sin(a)) ** 2 < (0.035 * s) ** 2] = ACCENT
    elif subject == "mountain":
        peak, base = gy - 0.55 * s, gy + 0.02
        slope = 0.55 * s / 0.42
        m = (y > peak) & (y < base) & (abs(x - cx) < (y - peak) / slope)
        cx2 = cx + rng.choice([-1, 1]) * 0.28
        m2 = (y > peak + 0.2) & (y < base) & (abs(x - cx2) < (y - peak - 0.2) / slope) & ~m
        snow = m & (y < peak + 0.14 * s)
        lab[m2], lab[m], lab[snow] = SECOND, MAIN, ACCENT
    elif subject == "flower":
        cy = gy - 0.42 * s
        stem = (abs(x - cx) < 0.018) & (y > cy) & (y < gy)
        leaf = ((x - cx - 0.07) / 2.2) ** 2 + (y - cy - 0.25 * s) ** 2 < 0.035 ** 2
        petals = np.zeros_like(stem)
        rot = rng.uniform(0, 2 * np.pi)
        for k in range(6):
            a = rot + k * np.pi / 3
            petals |= (x - cx - 0.11 * s * np.cos(a)) ** 2 + (y - cy - 0.11 * s * np.sin(a)) ** 2 < (0.075 * s) ** 2
        centre = (x - cx) ** 2 + (y - cy) ** 2 < (0.06 * s) ** 2
        lab[stem | leaf], lab[petals], lab[centre] = SECOND, MAIN, ACCENT
    else:
        raise ValueError(f"unknown subject {subject!r}; choose one of {SUBJECTS}")
    return lab, horizon


# ----------------------------------------------------------------------------- helpers
def _smooth_noise(rng, cells, res=RES):
    """Value noise: uniform [0,1) on a (cells x cells) lattice, bilinearly upsampled to res."""
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, res, endpoint=False, dtype=np.float32)
    i, f = t.astype(int), t - t.astype(int)
    f = f * f * (3 - 2 * f)
    a = g[i][:, i] * (1 - f)[None, :] + g[i][:, i + 1] * f[None, :]
    b = g[i + 1][:, i] * (1 - f)[None, :] + g[i + 1][:, i + 1] * f[None, :]
    return a * (1 - f)[:, None] + b * f[:, None]


def _blur(img, n=1):
    """n passes of a 3x3 binomial blur (edge-padded); img (H, W) or (H, W, C)."""
    for _ in range(n):
        p = np.pad(img, [(1, 1), (1, 1)] + [(0, 0)] * (img.ndim - 2), mode="edge")
        img = (p[:-2] + 2 * p[1:-1] + p[2:]) / 4
        img = (img[:, :-2] + 2 * img[:, 1:-1] + img[:, 2:]) / 4
    return img


def _edges(lab):
    """Boolean (H, W): pixels where the label changes to the right or below."""
    e = np.zeros(lab.shape, bool)
    e[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    e[:-1] |= lab[:-1] != lab[1:]
    return e


def _paint(lab, colors):
    """colors: dict region -> RGB triple in [0,1]; returns (H, W, 3) float."""
    out = np.zeros(lab.shape + (3,), np.float32)
    for region, c in colors.items():
        out[lab == region] = c
    return out


def _rgb(*hexes):
    return [np.array([int(h[i:i + 2], 16) for i in (0, 2, 4)], np.float32) / 255 for h in hexes]


def _pick(rng, pool, k):
    idx = rng.permutation(len(pool))[:k]
    return [pool[i] for i in idx]


# ----------------------------------------------------------------------------- styles
def _photo(lab, horizon, subject, rng):
    y, x = _grid()
    sky_top, sky_bot = _rgb("4a86c8", "b9d8f0")
    ground = _rgb("5f8f3e", "7b6a4f", "3f6f9f" if subject == "boat" else "6b8f4a")[
        rng.integers(3) if subject != "boat" else 2]
    natural = {
        "house": _rgb("c8a27a", "8b3a2e", "4b3621"), "boat": _rgb("f0f0f0", "e8e0d0", "6b4a2b"),
        "car": [_rgb("c0392b", "2e5e9e", "b8b8b8")[rng.integers(3)]] + _rgb("a9c6de", "222222"),
        "tree": _rgb("3f7f2f", "6b4a2b", "c0392b"), "mountain": _rgb("7d7d80", "5e6066", "fafafa"),
        "flower": _rgb("e04a6a", "3f8f3f", "f2c12e")}[subject]
    t = np.clip(y / horizon, 0, 1)[..., None]
    img = sky_top * (1 - t) + sky_bot * t
    img = np.where((lab == GROUND)[..., None], ground * (0.85 + 0.25 * (y[..., None] - horizon)), img)
    for region, c in zip((MAIN, SECOND, ACCENT), natural):
        img[lab == region] = c
    shade = 0.9 + 0.2 * (1 - y) + 0.06 * (x - 0.5)            # soft light from the top left
    img = _blur(img * shade[..., None], 1)
    return img + rng.normal(0, 0.008, img.shape)


def _van_gogh(lab, horizon, subject, rng):
    """Swirling two-colour strokes, cobalt blue and chrome yellow, period ~4 px."""
    y, x = _grid()
    phase = np.zeros_like(x)
    centres = rng.uniform(0.1, 0.9, (3, 2)) * [1, horizon]
    weight = np.zeros_like(x)
    for cx, cy in centres:
        r = np.hypot(x - cx, y - cy) + 1e-3
        w = np.exp(-r / 0.15)
        phase += w * r * RES / 4.0                          # concentric rings around each vortex
        weight += w
    flow = (x * np.cos(0.6) + y * np.sin(0.6)) * RES / 4.0 + 3 * _smooth_noise(rng, 3)
    phase = (phase + flow * 0.4) / (weight + 0.4)
    phase = phase + 2.0 * _smooth_noise(rng, 6)
    band = 0.5 + 0.5 * np.sin(2 * np.pi * phase)              # 0..1 stroke bands
    blue, deep, yellow, cream, green, ochre = _rgb("1f3f9f", "0f1f5f", "f2c21f", "f5e6a0", "2f5f2f", "c8901f")
    pairs = {SKY: (deep, blue), GROUND: (green, ochre), MAIN: (yellow, ochre),
             SECOND: (blue, cream), ACCENT: (yellow, deep)}
    if rng.random() < 0.5:
        pairs[MAIN] = (blue, yellow)
    img = np.zeros(lab.shape + (3,), np.float32)
    for region, (a, b) in pairs.items():
        m = lab == region
        img[m] = a * (1 - band[m, None]) + b * band[m, None]
    stars = (_smooth_noise(rng, 16) > 0.9) & (lab == SKY)
    img[stars] = yellow
    img[_edges(lab)] = deep
    return img


def _dabs(lab, rng, palette, shape):
    """Broken colour: each pixel takes one of a few region colours in blobs of `shape` (cy, cx) cells."""
    img = np.zeros(lab.shape + (3,), np.float32)
    cy, cx = shape
    choice = rng.random((RES // cy + 1, RES // cx + 1))
    choice = np.repeat(np.repeat(choice, cy, 0), cx, 1)[:RES, :RES]
    rng.random((RES // cy + 1, RES // cx + 1))   # unused draw, kept: the bundled models were trained on this RNG stream
    for region, cols in palette.items():
        m = lab == region
        k = np.minimum((choice * len(cols)).astype(int), len(cols) - 1)
        stack = np.stack(cols)
        img[m] = stack[k[m]]
    return img


def _monet(lab, horizon, subject, rng):
    """Pastel stipple: round-ish 2-3 px dabs of pink, lilac, aqua and pale green."""
    pink, lilac, aqua, pale, cream, rose, violet = _rgb("f4c4d4", "c8b8ec", "b0e4ec", "c4ecb4", "fcf2d0",
                                                         "d87098", "8c6cc8")
    pal = {SKY: [lilac, aqua, pink, cream], GROUND: [pale, aqua, lilac], MAIN: [rose, violet, pink],
           SECOND: [violet, rose], ACCENT: [violet, cream]}
    # dabs as blurred random field -> sharpen with a second fine field so the dots stay distinct
    img = np.zeros(lab.shape + (3,), np.float32)
    field = rng.random((RES // 2, RES // 2))
    field = np.kron(field, np.ones((2, 2)))
    field = np.roll(field, rng.integers(2), axis=1)
    for region, cols in pal.items():
        m = lab == region
        k = np.minimum((field * len(cols)).astype(int), len(cols) - 1)
        img[m] = np.stack(cols)[k[m]]
    img = _blur(img, 1) * 0.7 + img * 0.3
    return img


def _impressionist(lab, horizon, subject, rng):
    """Broken colour like Monet but in short horizontal dashes of saturated sunny colours."""
    sky1, sky2, white, grass, sun, red, olive = _rgb("5a8ee0", "3a6ec8", "f0f0e8", "4f9f2f", "f0a03a", "c8462f",
                                                     "8f8f2f")
    pal = {SKY: [sky1, sky2, white], GROUND: [grass, olive, sun], MAIN: [red, sun, white],
           SECOND: [grass, sun, olive], ACCENT: [red, white]}
    img = _dabs(lab, rng, pal, (2, 5))
    return img


def _facets(lab, rng, n, colours_for, outline, width):
    """Cubist facets: Voronoi cells x regions, each a flat colour, dark outlines on all borders."""
    y, x = _grid()
    pts = rng.random((n, 2)).astype(np.float32)
    d = (y[None] - pts[:, 0, None, None]) ** 2 + (x[None] - pts[:, 1, None, None]) ** 2
    cell = d.argmin(0)
    key = cell * 8 + lab
    img = np.zeros(lab.shape + (3,), np.float32)
    for k in np.unique(key):
        m = key == k
        img[m] = colours_for(int(k % 8), rng)
    e = _edges(key)
    if width > 1:
        e |= np.roll(e, 1, 0) | np.roll(e, 1, 1)
    img[e] = outline
    return img


def _picasso(lab, horizon, subject, rng):
    """Synthetic cubism: large facets in bright ochre, cobalt, terracotta and rose, thick black lines."""
    ochre, cobalt, terra, rose, teal, white = _rgb("e0a030", "3050b0", "c0502c", "e88ca0", "208080", "f0e8d8")
    pal = {SKY: [cobalt, teal], GROUND: [ochre, terra], MAIN: [rose, white],
           SECOND: [white, rose], ACCENT: [ochre, white]}
    return _facets(lab, rng, 9, lambda r, g: pal[r][g.integers(len(pal[r]))], np.zeros(3), 2)


def _cubist(lab, horizon, subject, rng):
    """Analytic cubism: many small facets in muted grey-brown monochrome, thin grey lines."""
    def colour(region, g):
        base = np.array([0.55, 0.50, 0.42]) * (1.45 if region in (MAIN, SECOND, ACCENT) else 0.8)
        return np.clip(base * g.uniform(0.75, 1.2), 0, 1)
    return _facets(lab, rng, 40, colour, np.array([0.25, 0.22, 0.2]), 1)


def _da_vinci(lab, horizon, subject, rng):
    """Sfumato: soft sepia tones, dark vignette, and a fine craquelure network of dark lines."""
    y, x = _grid()
    sky, umber, dark, ochre, olive = _rgb("948c68", "74502c", "3c2818", "e0b470", "5c5434")
    img = _paint(lab, {SKY: sky, GROUND: olive, MAIN: ochre, SECOND: umber, ACCENT: dark})
    img = _blur(img, 2)
    img *= (1.1 - 0.9 * ((x - 0.5) ** 2 + (y - 0.5) ** 2))[..., None]  # vignette
    n = _smooth_noise(rng, 9) + 0.5 * _smooth_noise(rng, 17)
    cracks = np.abs(np.sin(n * 9.0)) < 0.22                   # thin iso-lines of noise
    img[cracks] *= 0.45
    return img


def _warhol(lab, horizon, subject, rng):
    """Pop art: flat neon colours per region, Ben-Day halftone dots, bold black outlines."""
    y, x = _grid()
    neon = _rgb("f02896", "28c8e6", "96e632", "fa5a28", "8c3cc8")
    cols = _pick(rng, neon, 5)
    img = _paint(lab, dict(zip((SKY, GROUND, MAIN, SECOND, ACCENT), cols)))
    px, py = (x * RES) % 4 - 1.5, (y * RES) % 4 - 1.5
    dots = px ** 2 + py ** 2 < 2.2                             # 4 px halftone grid
    img[dots & (lab != MAIN)] *= 0.55
    e = _edges(lab)
    img[e | np.roll(e, 1, 0) | np.roll(e, 1, 1)] = 0
    return img


def _hokusai(lab, horizon, subject, rng):
    """Ukiyo-e woodblock: cream paper, Prussian blue and red, parallel wave lines, ink outlines."""
    y, x = _grid()
    paper, prussian, light, red, ink = _rgb("ecdcb4", "1c3c64", "6c94b4", "c8583c", "202020")
    img = _paint(lab, {SKY: paper, GROUND: prussian, MAIN: red, SECOND: light, ACCENT: paper})
    if subject in ("mountain", "house") and rng.random() < 0.5:
        img[lab == MAIN] = prussian
        img[lab == GROUND] = light
    wave = np.sin(2 * np.pi * (y * RES / 3.0 + 1.5 * np.sin(2 * np.pi * x * 2 + rng.uniform(0, 6))))
    lines = (wave > 0.6) & np.isin(lab, (GROUND, SECOND))
    img[lines] = paper * 0.9
    clouds = (np.abs(np.sin(2 * np.pi * (y * RES / 5.0))) < 0.25) & (lab == SKY) & (_smooth_noise(rng, 3) > 0.55)
    img[clouds] = light
    img[_edges(lab)] = ink
    grain = 0.04 * (_smooth_noise(rng, 32) - 0.5)
    return img + grain[..., None]


RENDERERS = {"Vincent van Gogh": _van_gogh, "Claude Monet": _monet, "Pablo Picasso": _picasso,
             "Leonardo da Vinci": _da_vinci, "Andy Warhol": _warhol, "Katsushika Hokusai": _hokusai,
             "impressionist": _impressionist, "cubist": _cubist, "photo": _photo}
assert list(RENDERERS) == STYLES


def render(style, subject, seed=None, rng=None):
    """One 64x64 RGB uint8 image of `subject` in `style`; same seed, same image."""
    if style not in RENDERERS:
        raise ValueError(f"unknown style {style!r}; choose one of {STYLES}")
    rng = rng if rng is not None else np.random.default_rng(seed)
    lab, horizon = _layout(subject, rng)
    img = RENDERERS[style](lab, horizon, subject, rng)
    img = img * rng.uniform(0.92, 1.08) + rng.uniform(-0.03, 0.03, 3)   # exposure / tint jitter
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_batch(n, seed, heldout=False):
    """n random (image, caption, style index, subject index) from one seed, for training."""
    rng = np.random.default_rng(seed)
    imgs, caps, st, su = [], [], [], []
    for _ in range(n):
        cap, style, subject = sample_caption(rng, heldout)
        imgs.append(render(style, subject, rng=rng))
        caps.append(cap)
        st.append(STYLES.index(style))
        su.append(SUBJECTS.index(subject))
    return np.stack(imgs), caps, np.array(st), np.array(su)
