"""Lloyd–Max scalar codebooks for the coordinates of a randomly rotated unit vector.

After a Haar-random rotation, one coordinate ``x`` of a unit vector in ``R^d`` has density

    f_d(x) = (1 - x²)^((d-3)/2) / B(1/2, (d-1)/2),    x ∈ [-1, 1],

which tends to ``N(0, 1/d)`` as ``d`` grows. The Lloyd–Max quantizer with ``L = 2^b`` levels alternates

    boundaries  t_i = (c_i + c_{i+1}) / 2,
    centroids   c_i = E[x | t_{i-1} < x ≤ t_i],

until it is stationary. Both conditional moments have closed forms (the regularised incomplete beta
function for the mass, ``∫ x (1-x²)^k dx = -(1-x²)^(k+1) / (2(k+1))`` for the first moment), so no
numerical integration runs, and the result is cached per ``(bits, dim)``.

The distortion per coordinate is ``D = E[x²] - Σ_i P_i c_i²`` (centroid condition); a unit vector's total
MSE is ``d · D``. At ``d = 128`` that is 0.3609, 0.1160, 0.0340, 0.0093 for ``b = 1..4`` (TurboQuant).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import special

MAX_BITS = 8


@dataclasses.dataclass(frozen=True)
class Codebook:
    """A scalar quantizer: ``2^bits`` ascending ``centroids`` and the ``2^bits - 1`` ``boundaries``.

    ``mse`` is the expected squared error of one coordinate; ``unit_vector_mse`` (``dim · mse``) is the
    expected ``‖u - û‖²`` of a unit vector (for ``dim=None``, the N(0, 1) quantizer, it equals ``mse``).
    """

    bits: int
    dim: int | None
    centroids: np.ndarray
    boundaries: np.ndarray
    mse: float

    @property
    def unit_vector_mse(self) -> float:
        return self.mse * (self.dim or 1)


class _Sphere:
    """One coordinate of a uniform point on the unit sphere in R^dim."""

    def __init__(self, dim: int):
        self.k = (dim - 3) / 2.0
        self.log_norm = special.betaln(0.5, self.k + 1.0)
        self.second_moment = 1.0 / dim
        self.scale = 1.0 / np.sqrt(dim)

    def cdf(self, x):
        x = np.clip(x, -1.0, 1.0)
        half = 0.5 * special.betainc(0.5, self.k + 1.0, x * x)
        return 0.5 + np.sign(x) * half

    def first_moment_antiderivative(self, x):
        x = np.clip(x, -1.0, 1.0)
        k1 = self.k + 1.0
        with np.errstate(divide="ignore"):  # log(0) at x = ±1 gives exp(-inf) = 0, as it should
            return -np.exp(k1 * np.log1p(-x * x) - self.log_norm) / (2.0 * k1)

    def companded_quantile(self, p):
        # f^(1/3) ∝ (1 - x²)^(k/3): the same family with exponent k/3.
        y = special.betaincinv(0.5, self.k / 3.0 + 1.0, np.abs(2.0 * p - 1.0))
        return np.sign(p - 0.5) * np.sqrt(y)


class _Gaussian:
    """N(0, 1)."""

    second_moment = 1.0
    scale = 1.0

    @staticmethod
    def cdf(x):
        return special.ndtr(x)

    @staticmethod
    def first_moment_antiderivative(x):
        return -np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)

    @staticmethod
    def companded_quantile(p):
        return np.sqrt(3.0) * special.ndtri(p)  # f^(1/3) ∝ N(0, 3)


def _lloyd(dist, levels: int, tol: float = 1e-13, max_iter: int = 20000):
    # Start from the high-resolution optimum (Panter–Dite companding: cell density ∝ f^(1/3)), so that
    # even 256 levels converge in few iterations.
    p = (np.arange(levels) + 0.5) / levels
    centroids = dist.companded_quantile(p)
    for _ in range(max_iter):
        boundaries = 0.5 * (centroids[1:] + centroids[:-1])
        edges = np.concatenate([[-np.inf], boundaries, [np.inf]])
        mass = np.diff(dist.cdf(edges))
        moment = np.diff(dist.first_moment_antiderivative(edges))
        new = moment / mass
        done = np.max(np.abs(new - centroids)) < tol * dist.scale
        centroids = new
        if done:
            break
    boundaries = 0.5 * (centroids[1:] + centroids[:-1])
    edges = np.concatenate([[-np.inf], boundaries, [np.inf]])
    mass = np.diff(dist.cdf(edges))
    mse = dist.second_moment - float(np.sum(mass * centroids**2))
    return centroids, boundaries, mse


def validate_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in 1..{MAX_BITS}, got {bits!r}")
    return int(bits)


@functools.lru_cache(maxsize=None)
def lloyd_max(bits: int, dim: int | None) -> Codebook:
    """The Lloyd–Max codebook with ``2^bits`` levels for one coordinate of a random unit vector in
    ``R^dim`` (``dim=None``: a standard normal coordinate). Cached; computed in closed form."""
    bits = validate_bits(bits)
    if dim is None:
        dist = _Gaussian()
    else:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
            raise ValueError(f"dim must be an integer >= 2 or None, got {dim!r}")
        dist = _Sphere(int(dim))
    centroids, boundaries, mse = _lloyd(dist, 2**bits)
    centroids.setflags(write=False)
    boundaries.setflags(write=False)
    return Codebook(bits, None if dim is None else int(dim), centroids, boundaries, mse)
