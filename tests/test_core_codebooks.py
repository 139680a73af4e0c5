import numpy as np
import pytest
from scipy import integrate, special

from rotorjax.codebooks import lloyd_max


@pytest.mark.parametrize("bits,want", [(1, 0.3609), (2, 0.1160), (3, 0.0340), (4, 0.0093)])
def test_turboquant_unit_vector_mse_at_128(bits, want):
    assert abs(lloyd_max(bits, 128).unit_vector_mse - want) <= 0.01 * want


def _density(d):
    k = (d - 3) / 2
    return lambda x: (1 - x * x) ** k / special.beta(0.5, k + 1)


@pytest.mark.parametrize("bits,dim", [(2, 16), (3, 7), (4, 128)])
def test_stationary_by_numerical_integration(bits, dim):
    """Independent check of the closed forms: each centroid is the conditional mean of its cell."""
    book = lloyd_max(bits, dim)
    f = _density(dim)
    edges = np.concatenate([[-1.0], book.boundaries, [1.0]])
    for i, c in enumerate(book.centroids):
        mass = integrate.quad(f, edges[i], edges[i + 1])[0]
        moment = integrate.quad(lambda x: x * f(x), edges[i], edges[i + 1])[0]
        assert abs(moment / mass - c) < 1e-7
    np.testing.assert_allclose(book.boundaries, (book.centroids[1:] + book.centroids[:-1]) / 2)
    mse = sum(integrate.quad(lambda x: (x - c) ** 2 * f(x), edges[i], edges[i + 1])[0] for i, c in enumerate(book.centroids))
    assert abs(mse - book.mse) < 1e-9


def test_monte_carlo_mse_on_random_unit_vectors():
    rng = np.random.default_rng(0)
    d = 24
    u = rng.normal(size=(20000, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    for bits in (1, 2, 3):
        book = lloyd_max(bits, d)
        q = book.centroids[np.searchsorted(book.boundaries, u)]
        empirical = np.mean(np.sum((u - q) ** 2, axis=1))
        assert abs(empirical / book.unit_vector_mse - 1) < 0.03


def test_shape_symmetry_scale_and_exact_cases():
    for bits in range(1, 9):
        book = lloyd_max(bits, 128)
        assert book.centroids.shape == (2**bits,) and book.boundaries.shape == (2**bits - 1,)
        assert np.all(np.diff(book.centroids) > 0)
        np.testing.assert_allclose(book.centroids, -book.centroids[::-1], atol=1e-12)
        assert np.max(np.abs(book.centroids)) < 5 / np.sqrt(128)
        # Between the 4^-b lower bound and TurboQuant's (√3 π / 2) 4^-b upper bound for unit vectors.
        assert 4.0**-bits < book.unit_vector_mse < np.sqrt(3) * np.pi / 2 * 4.0**-bits
    # d = 3: a coordinate is uniform on [-1, 1], so Lloyd–Max is the uniform quantizer.
    np.testing.assert_allclose(lloyd_max(3, 3).centroids, (np.arange(8) + 0.5) / 4 - 1, atol=1e-9)
    # N(0, 1) at 1 bit: ±√(2/π), MSE 1 − 2/π.
    g = lloyd_max(1, None)
    np.testing.assert_allclose(g.centroids, [-np.sqrt(2 / np.pi), np.sqrt(2 / np.pi)], atol=1e-12)
    assert abs(g.mse - (1 - 2 / np.pi)) < 1e-12
    assert abs(lloyd_max(2, None).centroids[-1] - 1.5104) < 1e-4  # Max (1960)
    # The sphere's coordinate tends to N(0, 1/d).
    np.testing.assert_allclose(lloyd_max(3, 4096).centroids * np.sqrt(4096), lloyd_max(3, None).centroids, rtol=2e-3)


def test_cached_and_read_only():
    assert lloyd_max(4, 64) is lloyd_max(4, 64)
    with pytest.raises(ValueError):
        lloyd_max(4, 64).centroids[0] = 0.0


@pytest.mark.parametrize("bits", [0, 9, 2.5, True, "4"])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        lloyd_max(bits, 64)


def test_bad_dim():
    with pytest.raises(ValueError, match="dim"):
        lloyd_max(2, 1)
