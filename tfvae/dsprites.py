"""dSprites-style images with known generative factors, rendered locally (``--dataset dsprites``).

The factors and their values follow Matthey et al. 2017 ("dSprites: disentanglement testing
sprites dataset", the ``latents_values`` of their file), without the constant colour factor:

==============  =====  ===============================================
factor          count  values
==============  =====  ===============================================
shape           3      square, ellipse, heart
scale           6      linspace(0.5, 1, 6)
orientation     40     linspace(0, 2π, 40) radians (0 and 2π coincide, as in the original)
position x      32     linspace(0, 1, 32)
position y      32     linspace(0, 1, 32)
==============  =====  ===============================================

3 · 6 · 40 · 32 · 32 = 737,280 binary 64×64 images, one per combination.

This is a re-rendering, not the original file (nothing is downloaded). It differs from it:

* the outlines are tfvae's own: a square of side 1.4R (its corners on the circle of radius R),
  an ellipse of semi-axes R and R/2, and the implicit heart (x² + y² − 1)³ = x² y³ fitted in
  that circle, with R = 10 px at scale 1 (the original's sprites have their own sizes and
  outlines);
* a pixel is 1 when its centre lies inside the rotated, scaled shape (no anti-aliasing);
* position index i puts the shape's centre at pixel coordinate 16 + i (whole-pixel steps,
  from 16 to 47 on both axes; y grows downwards);
* rotation is counter-clockwise on screen by the orientation value.

Because the shape's outline depends only on (shape, scale, orientation), the 720 outlines are
rendered once and every image is one of them shifted by whole pixels, so the whole set is
made in memory in seconds and nothing is written to disk. The images are stored in a fixed,
seeded order (:data:`ORDER_SEED`), so any prefix (``--max-train-examples``) is a uniform
sample of the factor combinations; the last :data:`TEST_SIZE` images of that order are the
test split. The label of an image is its shape.
"""

from __future__ import annotations

import math

import numpy as np

NAME = "dsprites"
FACTOR_NAMES = ("shape", "scale", "orientation", "position x", "position y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
IMAGE_SIZE = 64
SPRITE_RADIUS = 10.0  # pixels at scale 1
POSITION_OFFSET = 16  # pixel coordinate of the shape's centre at position index 0
ORDER_SEED = 0
TEST_SIZE = 10000
NUM_IMAGES = int(np.prod(FACTOR_SIZES))


def factor_values():
    """The value of each index of each factor: list of 5 float64 arrays (shape: 1, 2, 3 as in
    the original file; scale; orientation in radians; positions in [0, 1])."""
    return [np.arange(1.0, 4.0), np.linspace(0.5, 1.0, 6), np.linspace(0.0, 2 * math.pi, 40),
            np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32)]


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Is the point (u, v) (sprite units, v up, the shape's circle has radius 1) inside?"""
    if shape == 0:  # square of side 1.4, its corners (±0.7, ±0.7) on the unit circle
        return np.maximum(np.abs(u), np.abs(v)) <= 0.7
    if shape == 1:  # ellipse, semi-axes 1 and 1/2
        return u**2 + (v / 0.5) ** 2 <= 1.0
    x, y = 1.2 * u, 1.2 * v + 0.1  # heart: (x² + y² − 1)³ ≤ x² y³, fitted in the unit circle
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


def outlines() -> np.ndarray:
    """The 720 centred sprites: uint8 [3, 6, 40, 64, 64] in {0, 1}, the shape's centre at
    pixel coordinate (32, 32) (pixel j covers [j, j + 1))."""
    values = factor_values()
    c = np.arange(IMAGE_SIZE) + 0.5 - IMAGE_SIZE / 2
    px, py = np.meshgrid(c, -c)  # x right, y up
    out = np.zeros((3, 6, 40, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for s in range(3):
        for k, scale in enumerate(values[1]):
            r = SPRITE_RADIUS * scale
            for o, theta in enumerate(values[2]):
                cos, sin = math.cos(theta), math.sin(theta)
                u = (cos * px + sin * py) / r  # rotate the point by −θ: the shape turns by +θ
                v = (-sin * px + cos * py) / r
                out[s, k, o] = _inside(s, u, v)
    return out


_OUTLINES = None


def _cached_outlines() -> np.ndarray:
    global _OUTLINES
    if _OUTLINES is None:
        _OUTLINES = outlines()
    return _OUTLINES


def render(factors) -> np.ndarray:
    """Images of the given factor indices.

    Args:
        factors: int array [N, 5] of indices (shape, scale, orientation, position x,
            position y), each in 0 … size − 1 (:data:`FACTOR_SIZES`).

    Returns:
        uint8 [N, 64, 64, 1], pixels 0 or 255.

    Raises:
        ValueError: factors not [N, 5], or an index outside its factor's range.
    """
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factors must be [N, {len(FACTOR_SIZES)}] indices, got shape {factors.shape}")
    factors = factors.astype(np.int64)
    if (factors < 0).any() or (factors >= np.array(FACTOR_SIZES)).any():
        raise ValueError(f"factor indices must lie in 0 … size − 1 for sizes {FACTOR_SIZES}")
    templates = _cached_outlines()
    out = np.empty((len(factors), IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    grid = np.arange(IMAGE_SIZE)
    for start in range(0, len(factors), 8192):
        f = factors[start:start + 8192]
        sprites = templates[f[:, 0], f[:, 1], f[:, 2]]  # [n, 64, 64], centred at 32
        dx = POSITION_OFFSET + f[:, 3] - IMAGE_SIZE // 2
        dy = POSITION_OFFSET + f[:, 4] - IMAGE_SIZE // 2
        # The sprites stay clear of the borders at every shift, so a cyclic shift is a plain shift.
        rows = (grid[None, :] - dy[:, None]) % IMAGE_SIZE
        cols = (grid[None, :] - dx[:, None]) % IMAGE_SIZE
        sprites = np.take_along_axis(sprites, rows[:, :, None], axis=1)
        sprites = np.take_along_axis(sprites, cols[:, None, :], axis=2)
        out[start:start + len(f), ..., 0] = sprites * np.uint8(255)
    return out


def all_factors(indices=None) -> np.ndarray:
    """Factor indices int64 [N, 5] of images ``indices`` of the full product in its canonical
    (C) order (default: all :data:`NUM_IMAGES`)."""
    indices = np.arange(NUM_IMAGES) if indices is None else np.asarray(indices, np.int64)
    return np.stack(np.unravel_index(indices, FACTOR_SIZES), axis=1).astype(np.int64)


def sample_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    """n factor combinations drawn uniformly and independently: int64 [n, 5]."""
    return np.stack([rng.integers(0, size, n) for size in FACTOR_SIZES], axis=1)


class SpriteImages:
    """Array-like of the stored order's images, rendered when indexed (uint8 [N, 64, 64, 1]).

    ``images[idx]`` (an int array, a slice) returns a numpy array; the factors of those images
    are ``images.factors[idx]``.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, order: np.ndarray):
        self.order = np.asarray(order, np.int64)
        self.factors = all_factors(self.order)

    def __len__(self) -> int:
        return len(self.order)

    @property
    def shape(self) -> tuple:
        return (len(self.order), IMAGE_SIZE, IMAGE_SIZE, 1)

    def __getitem__(self, idx):
        return render(self.factors[idx].reshape(-1, len(FACTOR_SIZES)))


def stored_order() -> np.ndarray:
    """The fixed permutation of the 737,280 combinations the dataset is stored in: int64 [N]."""
    return np.random.default_rng(ORDER_SEED).permutation(NUM_IMAGES)


def load_splits():
    """(train, train_labels, test, test_labels, class_names) for ``--dataset dsprites``:
    train a :class:`SpriteImages` of 727,280 images (rendered when indexed), test uint8
    [10000, 64, 64, 1]; labels int64, the shape index."""
    order = stored_order()
    train = SpriteImages(order[:-TEST_SIZE])
    test_factors = all_factors(order[-TEST_SIZE:])
    return (train, train.factors[:, 0].copy(), render(test_factors), test_factors[:, 0].copy(), list(SHAPES))
