import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from rotorjax import clifford as C

# An independent model of Cl(3,0): the Pauli matrices generate it (e_i ↦ σ_i), so every blade is a
# 2×2 complex matrix and the geometric product is the matrix product.
_SIGMA = [np.array([[0, 1], [1, 0]], complex), np.array([[0, -1j], [1j, 0]]), np.array([[1, 0], [0, -1]], complex)]
_BLADE_FACTORS = [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]


def _pauli(mv):
    out = np.zeros((2, 2), complex)
    for coeff, factors in zip(mv, _BLADE_FACTORS):
        m = np.eye(2, dtype=complex)
        for f in factors:
            m = m @ _SIGMA[f]
        out += coeff * m
    return out


def _from_pauli(m):
    basis = np.stack([_pauli(np.eye(8)[i]).ravel() for i in range(8)], 1)
    # The 8 blades span M2(C) as a real vector space: solve for real coefficients.
    a = np.concatenate([basis.real, basis.imag])
    b = np.concatenate([m.ravel().real, m.ravel().imag])
    return np.linalg.lstsq(a, b, rcond=None)[0]


def test_full_basis_table_matches_pauli_model():
    eye = np.eye(8, dtype=np.float32)
    for i, j in itertools.product(range(8), repeat=2):
        got = np.asarray(C.geometric_product(eye[i], eye[j]))
        want = _from_pauli(_pauli(eye[i]) @ _pauli(eye[j]))
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"blade {i} * blade {j}")


def test_known_products():
    e = np.eye(8, dtype=np.float32)
    gp = lambda a, b: np.asarray(C.geometric_product(e[a], e[b]))
    np.testing.assert_array_equal(gp(1, 2), e[4])  # e1 e2 = e12
    np.testing.assert_array_equal(gp(2, 1), -e[4])  # e2 e1 = -e12
    np.testing.assert_array_equal(gp(4, 4), -e[0])  # e12² = -1
    np.testing.assert_array_equal(gp(7, 7), -e[0])  # e123² = -1
    np.testing.assert_array_equal(gp(1, 6), e[7])  # e1 e23 = e123


def test_associativity(key):
    a, b, c = jax.random.normal(key, (3, 16, 8))
    lhs = C.geometric_product(C.geometric_product(a, b), c)
    rhs = C.geometric_product(a, C.geometric_product(b, c))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5, atol=1e-5)


def test_reverse_and_grade(key):
    a = jax.random.normal(key, (8,))
    np.testing.assert_allclose(C.reverse(a), a * np.array([1, 1, 1, 1, -1, -1, -1, -1]))
    total = sum(C.grade(a, k) for k in range(4))
    np.testing.assert_allclose(total, a)
    np.testing.assert_array_equal(np.nonzero(np.asarray(C.grade(a, 2)))[0], [4, 5, 6])
    b = jax.random.normal(jax.random.fold_in(key, 1), (8,))
    # (ab)~ = b~ a~
    np.testing.assert_allclose(C.reverse(C.geometric_product(a, b)), C.geometric_product(C.reverse(b), C.reverse(a)), atol=1e-5)
    with pytest.raises(ValueError, match="grade"):
        C.grade(a, 4)


def test_sandwich_equals_matrix_and_is_rotation(key):
    k1, k2 = jax.random.split(key)
    r = C.random_rotor(k1, (64,))
    v = jax.random.normal(k2, (64, 3))
    m = C.rotor_to_matrix(r)
    np.testing.assert_allclose(C.sandwich(r, v), jnp.einsum("nij,nj->ni", m, v), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jnp.einsum("nji,njk->nik", m, m), np.broadcast_to(np.eye(3), (64, 3, 3)), atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.det(m), np.ones(64), atol=1e-5)
    # Unnormalised rotors give the same rotation (homogeneous form).
    np.testing.assert_allclose(C.rotor_to_matrix(3.0 * r), m, atol=1e-5)


def test_exp_convention_rotates_e1_toward_e2():
    theta = 0.7
    r = C.rotor_exp(jnp.array([theta, 0.0, 0.0]))
    np.testing.assert_allclose(C.sandwich(r, jnp.array([1.0, 0, 0])), [np.cos(theta), np.sin(theta), 0], atol=1e-6)
    r = C.rotor_exp(jnp.array([0.0, 0.0, theta]))  # e23: e2 toward e3
    np.testing.assert_allclose(C.sandwich(r, jnp.array([0.0, 1, 0])), [0, np.cos(theta), np.sin(theta)], atol=1e-6)


def test_exp_log_round_trip(key):
    b = jax.random.normal(key, (256, 3))
    b = b / jnp.linalg.norm(b, axis=-1, keepdims=True) * jax.random.uniform(jax.random.fold_in(key, 1), (256, 1), maxval=3.0)
    np.testing.assert_allclose(C.rotor_log(C.rotor_exp(b)), b, atol=2e-5)
    r = C.random_rotor(key, (256,))
    np.testing.assert_allclose(C.rotor_exp(C.rotor_log(r)), r, atol=2e-5)
    np.testing.assert_allclose(C.rotor_exp(jnp.zeros(3)), [1, 0, 0, 0])


def test_compose_and_matrix_round_trip(key):
    k1, k2 = jax.random.split(key)
    r1, r2 = C.random_rotor(k1, (32,)), C.random_rotor(k2, (32,))
    via_table = C.geometric_product(C.even_to_multivector(r1), C.even_to_multivector(r2))
    np.testing.assert_allclose(C.compose(r1, r2), via_table[..., [0, 4, 5, 6]], atol=1e-6)
    np.testing.assert_allclose(via_table[..., [1, 2, 3, 7]], 0, atol=1e-6)  # the even subalgebra is closed
    np.testing.assert_allclose(C.rotor_to_matrix(C.compose(r1, r2)), C.rotor_to_matrix(r1) @ C.rotor_to_matrix(r2), atol=1e-5)
    # Shepperd's branches: include rotations by ~π about each axis (trace ≈ -1).
    near_pi = C.rotor_exp(jnp.array([[3.14, 0, 0], [0, 3.14, 0], [0, 0, 3.14], [0.1, 0.2, 0.3]]))
    for r in (r1, near_pi):
        m = C.rotor_to_matrix(r)
        back = C.matrix_to_rotor(m)
        np.testing.assert_allclose(C.rotor_to_matrix(back), m, atol=2e-5)
        np.testing.assert_allclose(jnp.abs(jnp.sum(back * r / jnp.linalg.norm(r, axis=-1, keepdims=True), -1)), 1, atol=1e-5)


def test_random_rotor_is_haar_by_angle_law(key):
    angles = np.asarray(C.rotation_angle(C.random_rotor(key, (20000,))))
    haar_cdf = lambda t: (t - np.sin(t)) / np.pi  # density (1 - cos θ)/π on [0, π]
    assert stats.kstest(angles, haar_cdf).pvalue > 1e-3
    # RotorQuant's sampler (uniform angle about a uniform axis) fails the same test.
    k1, k2 = jax.random.split(key)
    axis = jax.random.normal(k1, (20000, 3))
    axis = axis / jnp.linalg.norm(axis, axis=-1, keepdims=True)
    uniform = C.rotor_exp(axis * jax.random.uniform(k2, (20000, 1), maxval=np.pi))
    assert stats.kstest(np.asarray(C.rotation_angle(uniform)), haar_cdf).pvalue < 1e-6


def test_gradients_match_finite_differences(key):
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(key, 3)
        b = jax.random.normal(k1, (4, 3), jnp.float64)
        v = jax.random.normal(k2, (4, 3), jnp.float64)
        w = jax.random.normal(k3, (4, 3), jnp.float64)
        f = jax.jit(lambda b, v: jnp.sum(w * C.sandwich(C.rotor_exp(b), v)))
        check_grads(f, (b, v), order=2, modes=["rev", "fwd"])
        g = jax.jit(lambda r: jnp.sum(w * jnp.einsum("nij,nj->ni", C.rotor_to_matrix(r), v)))
        check_grads(g, (jax.random.normal(k3, (4, 4), jnp.float64),), order=1)
        # Smooth through B = 0.
        assert np.all(np.isfinite(jax.grad(lambda b: jnp.sum(C.rotor_exp(b)))(jnp.zeros(3, jnp.float64))))


def test_batch_broadcast(key):
    r = C.random_rotor(key, (5, 1))
    v = jax.random.normal(key, (1, 7, 3))
    assert C.sandwich(r, v).shape == (5, 7, 3)
    with pytest.raises(ValueError, match="rotor"):
        C.rotor_to_matrix(jnp.zeros((3,)))
