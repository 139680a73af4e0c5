import jax.numpy as jnp
import numpy as np
import pytest

from rotorjax import metrics


def test_values():
    x = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    y = jnp.array([[1.0, 1.0], [0.0, 1.0]])
    assert float(metrics.mse(x, y, normalized=False)) == pytest.approx(1.0)
    assert float(metrics.mse(x, y)) == pytest.approx((1.0 + 0.25) / 2)
    assert float(metrics.cosine_similarity(x, y)) == pytest.approx((1 / np.sqrt(2) + 1) / 2)
    e = metrics.inner_product_error(jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, 4.0, 6.0]))
    assert float(e["slope"]) == pytest.approx(2.0) and float(e["bias"]) == pytest.approx(2.0)
    assert float(e["variance"]) == pytest.approx(np.var([1.0, 2.0, 3.0]))


def test_topk_recall():
    true = jnp.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    assert float(metrics.topk_recall(true, true, 2)) == 1.0
    assert float(metrics.topk_recall(true, -true, 2)) == 0.0
    assert float(metrics.topk_recall(true, jnp.array([[5.0, 0.0, 3.0, 2.0, 1.0]]), 2)) == 0.5
    with pytest.raises(ValueError, match="k"):
        metrics.topk_recall(true, true, 6)
