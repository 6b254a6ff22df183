"""Drawing the shapes world: glyphs, nuisance attributes and captions.

Everything is deterministic from a ``numpy.random.Generator``. A scene is a
set of sampled attributes (class, colour, size, position, rotation,
background, noise); :func:`render` turns scenes into ``uint8`` pixels and
:func:`caption` into a natural sentence that names the class and some of the
attributes, the way COCO captions name objects and attributes.

The class is carried by the glyph's *shape* only: colour, size, position,
rotation, background and noise are drawn independently of the class, so no
single pixel statistic separates the classes.
"""

from __future__ import annotations

import math

import numpy as np

#: CIFAR-10 class names, in CIFAR-10 order.
CLASSNAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: Bump when drawing or captions change: it is part of every cache key.
GENERATOR_VERSION = 1

# Named colours (RGB 0-255). Names never contain a class name.
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 215),
    "yellow": (240, 215, 40),
    "orange": (245, 140, 30),
    "purple": (140, 50, 180),
    "pink": (245, 130, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "brown": (130, 80, 40),
    "cyan": (40, 200, 210),
}
COLOUR_NAMES = tuple(COLOURS)
_RGB = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=np.float32) / 255.0

BACKGROUNDS = ("plain", "gradient", "striped", "speckled", "checkered")
PATTERN_STRENGTH = 0.4


# -- glyphs --------------------------------------------------------------------
# Each glyph is a list of polygons in unit coordinates (x right, y down, the
# glyph fits in [-1, 1]^2). Circles are polygons too, so rotation is uniform.

def _rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _ellipse(cx, cy, rx, ry, n=20, a0=0.0, a1=2 * math.pi):
    return [(cx + rx * math.cos(a0 + (a1 - a0) * i / n), cy + ry * math.sin(a0 + (a1 - a0) * i / n))
            for i in range(n + (0 if a1 - a0 >= 2 * math.pi else 1))]


def _thick_polyline(points, width):
    """A polyline drawn as one quad per segment (joints overlap)."""
    polys = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        dx, dy = x1 - x0, y1 - y0
        n = math.hypot(dx, dy) or 1.0
        ox, oy = -dy / n * width / 2, dx / n * width / 2
        polys.append([(x0 + ox, y0 + oy), (x1 + ox, y1 + oy), (x1 - ox, y1 - oy), (x0 - ox, y0 - oy)])
    return polys


def _ring(cx, cy, r_out, r_in, n=24):
    # an annulus as a band of quads
    polys = []
    for i in range(n):
        a0, a1 = 2 * math.pi * i / n, 2 * math.pi * (i + 1.05) / n
        polys.append([(cx + r_out * math.cos(a0), cy + r_out * math.sin(a0)),
                      (cx + r_out * math.cos(a1), cy + r_out * math.sin(a1)),
                      (cx + r_in * math.cos(a1), cy + r_in * math.sin(a1)),
                      (cx + r_in * math.cos(a0), cy + r_in * math.sin(a0))])
    return polys


def _glyphs() -> dict:
    g = {}
    # airplane: long fuselage, swept wings, tail fin (seen from above)
    g["airplane"] = [
        _rect(-1.0, -0.12, 1.0, 0.12),
        [(0.25, -0.1), (-0.2, -0.95), (-0.45, -0.95), (-0.15, -0.1)],
        [(0.25, 0.1), (-0.2, 0.95), (-0.45, 0.95), (-0.15, 0.1)],
        [(-0.75, -0.1), (-0.95, -0.45), (-1.0, -0.45), (-0.95, -0.1)],
        [(-0.75, 0.1), (-0.95, 0.45), (-1.0, 0.45), (-0.95, 0.1)],
    ]
    # automobile: low body, cabin on top, two wheels
    g["automobile"] = [
        _rect(-1.0, -0.05, 1.0, 0.4),
        [(-0.55, -0.05), (-0.3, -0.5), (0.35, -0.5), (0.6, -0.05)],
        _ellipse(-0.55, 0.45, 0.27, 0.27),
        _ellipse(0.55, 0.45, 0.27, 0.27),
    ]
    # bird: a gull seen from afar, two arched wings
    g["bird"] = _thick_polyline([(-1.0, -0.1), (-0.55, -0.45), (0.0, 0.2), (0.55, -0.45), (1.0, -0.1)], 0.3)
    # cat: round head with two pointed ears
    g["cat"] = [
        _ellipse(0.0, 0.2, 0.75, 0.68),
        [(-0.75, -0.05), (-0.7, -0.95), (-0.15, -0.4)],
        [(0.75, -0.05), (0.7, -0.95), (0.15, -0.4)],
    ]
    # deer: branching antlers on a short stem
    g["deer"] = (_thick_polyline([(0.0, 1.0), (0.0, 0.2)], 0.3)
                 + _thick_polyline([(0.0, 0.25), (-0.7, -0.35), (-0.8, -1.0)], 0.22)
                 + _thick_polyline([(0.0, 0.25), (0.7, -0.35), (0.8, -1.0)], 0.22)
                 + _thick_polyline([(-0.45, -0.15), (-0.2, -0.8)], 0.2)
                 + _thick_polyline([(0.45, -0.15), (0.2, -0.8)], 0.2))
    # dog: a bone
    g["dog"] = [
        _rect(-0.7, -0.17, 0.7, 0.17),
        _ellipse(-0.78, -0.2, 0.22, 0.22), _ellipse(-0.78, 0.2, 0.22, 0.22),
        _ellipse(0.78, -0.2, 0.22, 0.22), _ellipse(0.78, 0.2, 0.22, 0.22),
    ]
    # frog: a lily pad ring with a notch-free hole
    g["frog"] = _ring(0.0, 0.0, 0.95, 0.5)
    # horse: a horseshoe (U opening upwards)
    g["horse"] = (_thick_polyline(_ellipse(0.0, 0.0, 0.72, 0.8, n=12, a0=0.0, a1=math.pi), 0.38)
                  + [_rect(-0.91, -0.95, -0.53, 0.05), _rect(0.53, -0.95, 0.91, 0.05)])
    # ship: hull and a triangular sail
    g["ship"] = [
        [(-1.0, 0.35), (1.0, 0.35), (0.7, 0.85), (-0.7, 0.85)],
        [(0.05, -1.0), (0.05, 0.3), (0.75, 0.3)],
        [(-0.05, -0.75), (-0.05, 0.3), (-0.6, 0.3)],
    ]
    # truck: tall cargo box, lower cab in front, three wheels
    g["truck"] = [
        _rect(-1.0, -0.7, 0.35, 0.4),
        [(0.4, -0.25), (0.75, -0.25), (1.0, 0.05), (1.0, 0.4), (0.4, 0.4)],
        _ellipse(-0.7, 0.5, 0.22, 0.22),
        _ellipse(-0.2, 0.5, 0.22, 0.22),
        _ellipse(0.7, 0.5, 0.22, 0.22),
    ]
    return g


GLYPHS = _glyphs()


# -- scenes ----------------------------------------------------------------------

def sample_scenes(rng: np.random.Generator, labels: np.ndarray, image_size: int = 32, *,
                  backgrounds=BACKGROUNDS, max_rotation: float = 15.0, max_noise: float = 0.05,
                  size_range=(0.22, 0.45)) -> dict:
    """Sample nuisance attributes for one image per label (independent of the label).

    ``backgrounds`` (a subset of :data:`BACKGROUNDS`), ``max_rotation``
    (degrees), ``max_noise`` (pixel noise std) and ``size_range`` (glyph
    half-extent / image size) set how hard the world is."""
    n = len(labels)
    size = rng.uniform(size_range[0], size_range[1], n) * image_size  # glyph half-extent in pixels
    margin = size * 0.8
    cx = rng.uniform(margin, image_size - margin)
    cy = rng.uniform(margin, image_size - margin)
    colour = rng.integers(0, len(COLOUR_NAMES), n)
    # background colours that contrast with the object
    dist = np.linalg.norm(_RGB[:, None] - _RGB[None], axis=-1)
    bg1 = np.empty(n, dtype=np.int64)
    bg2 = np.empty(n, dtype=np.int64)
    for i in range(n):
        ok = np.flatnonzero(dist[colour[i]] > 0.45)
        bg1[i] = ok[rng.integers(len(ok))]
        ok2 = ok[ok != bg1[i]]
        bg2[i] = ok2[rng.integers(len(ok2))]
    return {
        "label": np.asarray(labels, dtype=np.int64),
        "size": size,
        "cx": cx,
        "cy": cy,
        "angle": rng.uniform(-max_rotation, max_rotation, n),
        "flip": rng.random(n) < 0.5,
        "colour": colour,
        "shade": rng.uniform(-0.12, 0.12, n),
        "background": np.array([BACKGROUNDS.index(b) for b in backgrounds])[rng.integers(0, len(backgrounds), n)],
        "bg1": bg1,
        "bg2": bg2,
        "bg_angle": rng.uniform(0, math.pi, n),
        "bg_freq": rng.uniform(0.25, 0.7, n),
        "noise": rng.uniform(0.0, max_noise, n),
        "noise_seed": rng.integers(0, 2**31 - 1, n),
        "caption_choice": rng.integers(0, 2**31 - 1, n),
    }


_GLYPH_ARRAYS = {c: [np.asarray(p, dtype=np.float64) for p in polys] for c, polys in GLYPHS.items()}


def _mask(label: int, cx, cy, size, angle, flip, image_size, supersample=4) -> np.ndarray:
    """Antialiased glyph coverage ``[H, W]`` in [0, 1] (drawn 4x larger, box-filtered down)."""
    from PIL import Image, ImageDraw

    s = image_size * supersample
    im = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(im)
    a = math.radians(angle)
    fx = -1.0 if flip else 1.0
    # flip, rotate, scale and move into supersampled pixel coordinates, in one matrix
    m = np.array([[math.cos(a) * fx, -math.sin(a)], [math.sin(a) * fx, math.cos(a)]]) * size * supersample
    off = np.array([cx, cy]) * supersample
    for poly in _GLYPH_ARRAYS[CLASSNAMES[label]]:
        draw.polygon((poly @ m.T + off).ravel().tolist(), fill=255)
    im = im.resize((image_size, image_size), Image.BOX)
    return np.asarray(im, dtype=np.float32) / 255.0


def _backgrounds(sc: dict, rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Backgrounds ``[N, 3, H, W]`` float: two colours mixed by a per-kind pattern."""
    n = len(sc["label"])
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    ang = sc["bg_angle"].astype(np.float32)[:, None, None]
    u = (np.cos(ang) * xx + np.sin(ang) * yy) / image_size  # [N,H,W]
    kind = sc["background"][:, None, None]
    umin, umax = u.min(axis=(1, 2), keepdims=True), u.max(axis=(1, 2), keepdims=True)
    gradient = (u - umin) / (umax - umin + 1e-6)
    striped = (np.sin(u * image_size * sc["bg_freq"][:, None, None] * 2) > 0).astype(np.float32)
    speckled = (rng.random((n, image_size, image_size)) < 0.3).astype(np.float32)
    k = np.maximum(2, np.round(3 + 4 * sc["bg_freq"])).astype(np.int64)[:, None, None]
    checkered = (((xx.astype(np.int64) // k) + (yy.astype(np.int64) // k)) % 2).astype(np.float32)
    # textures are faint (a second colour mixed in at PATTERN_STRENGTH) so the
    # glyph's outline stays the strongest edge in the image
    t = np.select([kind == 0, kind == 1, kind == 2, kind == 3],
                  [np.zeros_like(u), gradient, striped * PATTERN_STRENGTH, speckled * PATTERN_STRENGTH],
                  checkered * PATTERN_STRENGTH)[:, None]
    c1 = _RGB[sc["bg1"]][:, :, None, None]
    c2 = _RGB[sc["bg2"]][:, :, None, None]
    return c1 * (1 - t) + c2 * t


def render(scenes: dict, image_size: int = 32, chunk: int = 2048) -> np.ndarray:
    """Scenes -> ``uint8`` images ``[N, 3, H, W]`` (deterministic from the scenes)."""
    n = len(scenes["label"])
    out = np.empty((n, 3, image_size, image_size), dtype=np.uint8)
    for lo in range(0, n, chunk):
        idx = slice(lo, min(n, lo + chunk))
        sc = {k: v[idx] for k, v in scenes.items()}
        rng = np.random.default_rng(int(sc["noise_seed"][0]))
        a = np.stack([_mask(int(sc["label"][i]), sc["cx"][i], sc["cy"][i], sc["size"][i], sc["angle"][i],
                            bool(sc["flip"][i]), image_size) for i in range(len(sc["label"]))])[:, None]
        bg = _backgrounds(sc, rng, image_size)
        obj = np.clip(_RGB[sc["colour"]] + sc["shade"][:, None].astype(np.float32), 0, 1)[:, :, None, None]
        img = bg * (1 - a) + obj * a
        img += rng.standard_normal(img.shape, dtype=np.float32) * sc["noise"].astype(np.float32)[:, None, None, None]
        out[idx] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


# -- captions ----------------------------------------------------------------------

def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _with_article(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def _size_word(size: float, image_size: int):
    r = size / image_size
    return "small" if r < 0.29 else ("large" if r > 0.38 else None)


def _position_words(cx: float, cy: float, image_size: int) -> str:
    h = "left" if cx < image_size / 3 else ("right" if cx > 2 * image_size / 3 else "")
    v = "top" if cy < image_size / 3 else ("bottom" if cy > 2 * image_size / 3 else "")
    if h and v:
        return f"in the {v} {h} corner"
    if h or v:
        return f"on the {h or v}"
    return "in the middle"


_BG_PHRASES = {
    "plain": "a plain {c1} background",
    "gradient": "a {c1} and {c2} gradient",
    "striped": "{c1} and {c2} stripes",
    "speckled": "a speckled {c1} background",
    "checkered": "a {c1} and {c2} checkered background",
}

# Caption templates. {obj} is "[size] [colour] class" with its article added
# where needed; every template mentions the class name.
_TEMPLATES = (
    "a photo of {obj}",
    "a photo of {obj} on {bg}",
    "{obj} {pos}",
    "{obj} on {bg}",
    "a picture of {obj} {pos}",
    "an image showing {obj} against {bg}",
    "there is {obj} {pos} of the image",
    "a drawing of {obj}",
    "{obj} in front of {bg}",
    "a close-up photo of {obj}",
    "a blurry photo of {obj}",
    "a snapshot of {obj} {pos}, with {bg} behind it",
    "this is {obj}",
    "{bare} painted {colour}",
    "{plain} {pos}, on {bg}",
    "{bare}",
)


def caption(scenes: dict, i: int, image_size: int = 32) -> str:
    """A natural caption for scene ``i`` (deterministic from the scene)."""
    rng = np.random.default_rng(int(scenes["caption_choice"][i]))
    cls = CLASSNAMES[int(scenes["label"][i])]
    colour = COLOUR_NAMES[int(scenes["colour"][i])]
    words = [cls]
    if rng.random() < 0.7:
        words.insert(0, colour)
    size = _size_word(scenes["size"][i], image_size)
    if size and rng.random() < 0.6:
        words.insert(0, size)
    obj = _with_article(" ".join(words))
    bg = _BG_PHRASES[BACKGROUNDS[int(scenes["background"][i])]].format(
        c1=COLOUR_NAMES[int(scenes["bg1"][i])], c2=COLOUR_NAMES[int(scenes["bg2"][i])])
    pos = _position_words(scenes["cx"][i], scenes["cy"][i], image_size)
    t = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    text = t.format(obj=obj, bg=bg, pos=pos, colour=colour, bare=_with_article(cls),
                    plain=_with_article(f"{colour} {cls}"))
    return text


def captions(scenes: dict, image_size: int = 32) -> list:
    return [caption(scenes, i, image_size) for i in range(len(scenes["label"]))]
