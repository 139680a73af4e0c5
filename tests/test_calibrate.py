import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rotorjax as rj
from rotorjax.calibrate import CALIBRATABLE, distortion, quantization_mse, unit_rows

DIM = 32


@pytest.fixture(scope="module")
def outliers():
    """Outlier-channel vectors (structured: a few channels dominate), split into fit and held-out rows."""
    x = rj.inputs.outlier_channels(jax.random.key(1), 4096, DIM)
    return x[:1024], x[1024:]


@pytest.mark.parametrize("kind", CALIBRATABLE)
def test_distortion_is_the_pipeline_error(kind, key):
    """The training objective is exactly the normalised MSE of the real encode/decode path."""
    rot = rj.rotations.make(kind, DIM, key)
    x = rj.inputs.outlier_channels(jax.random.fold_in(key, 1), 512, DIM)
    tq = rj.TurboQuant(DIM, 3, rot, backend="jax")
    np.testing.assert_allclose(float(distortion(rot, unit_rows(x), tq)), quantization_mse(rot, x, 3),
                               rtol=1e-5)


@pytest.mark.parametrize("kind", CALIBRATABLE)
def test_calibration_beats_every_random_draw_on_held_out_rows(kind, outliers):
    """At 2 bits on outlier channels, the calibrated rotation's held-out MSE is below the best of 8
    random rotations of its family (the spread of random draws is 10–30% here; calibration gains more)."""
    fit, held_out = outliers
    random = [quantization_mse(rj.rotations.make(kind, DIM, jax.random.key(s)), held_out, 2) for s in range(8)]
    fitted = rj.calibrate(rj.rotations.make(kind, DIM, jax.random.key(0)), fit, steps=200, bits=2)
    assert quantization_mse(fitted, held_out, 2) < 0.97 * min(random)


def test_block_rotor_gains_most_but_stays_above_haar(outliers):
    """Block rotors cannot move energy between blocks: calibration helps a lot, yet cannot reach a dense
    rotation on outlier channels; rotor-mix (Hadamard stages) can beat it."""
    fit, held_out = outliers
    start = rj.rotations.make("rotor", DIM, jax.random.key(0))
    before = quantization_mse(start, held_out, 2)
    after = quantization_mse(rj.calibrate(start, fit, steps=200, bits=2), held_out, 2)
    haar = quantization_mse("haar", held_out, 2)
    mix = quantization_mse(rj.calibrate(rj.rotations.make("rotor-mix", DIM, jax.random.key(0)), fit, steps=200,
                                             bits=2), held_out, 2)
    assert after < 0.85 * before
    assert after > haar
    assert mix < haar


@pytest.mark.parametrize("kind", CALIBRATABLE)
def test_result_is_a_rotation_of_the_same_type(kind, key):
    start = rj.rotations.make(kind, 10, key)
    x = rj.inputs.isotropic(key, 64, 10) * jnp.arange(1.0, 11.0)
    fitted = rj.calibrate(start, x, steps=20, bits=2, optimizer=optax.adam(0.1))
    assert type(fitted) is type(start) and fitted.dim == start.dim
    assert jax.tree.map(jnp.shape, fitted) == jax.tree.map(jnp.shape, start)
    assert not np.allclose(fitted.params, start.params)
    m = np.asarray(fitted.as_matrix())
    np.testing.assert_allclose(m.T @ m, np.eye(10), atol=1e-5)
    if kind != "planar":
        np.testing.assert_allclose(np.linalg.norm(fitted.params, axis=-1), 1.0, atol=1e-6)


def test_zero_steps_keeps_the_map(key):
    start = rj.rotations.make("rotor-mix", 20, key)
    same = rj.calibrate(start, rj.inputs.isotropic(key, 32, 20), steps=0)
    np.testing.assert_allclose(same.as_matrix(), start.as_matrix(), atol=1e-6)


def test_minibatches_and_vmap_over_heads(outliers):
    """``batch_size`` draws rows per step; ``vmap`` fits one rotation per head in one compiled program."""
    fit, held_out = outliers
    heads = 3
    starts = jax.vmap(lambda k: rj.rotations.make("rotor-mix", DIM, k))(jax.random.split(jax.random.key(0), heads))
    data = jnp.stack([fit * (1.0 + h) for h in range(heads)])  # scale does not matter: directions do
    fitted = jax.vmap(lambda r, x: rj.calibrate(r, x, steps=150, bits=2, batch_size=256))(starts, data)
    for h in range(heads):
        before = quantization_mse(jax.tree.map(lambda p: p[h], starts), held_out, 2)
        after = quantization_mse(jax.tree.map(lambda p: p[h], fitted), held_out, 2)
        assert after < 0.97 * before


def test_rejects_what_it_cannot_fit(key):
    x = rj.inputs.isotropic(key, 16, 8)
    for kind in ("haar", "hadamard"):
        with pytest.raises(ValueError, match="no unconstrained parameters"):
            rj.calibrate(rj.rotations.make(kind, 8, key), x)
    with pytest.raises(ValueError, match="dim"):
        rj.calibrate(rj.rotations.make("rotor", 9, key), x)
    with pytest.raises(ValueError, match="steps"):
        rj.calibrate(rj.rotations.make("rotor", 8, key), x, steps=-1)
