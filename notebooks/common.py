"""Shared set-up for the notebooks: the size switch, plot style, and post-RoPE key capture.

``ROTORJAX_NOTEBOOK_SMALL=1`` (what ``tests/test_notebooks.py`` sets) shrinks every notebook to a smoke
run of seconds; unset, the notebooks run at the size whose outputs are committed.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import matplotlib
import numpy as np

SMALL = os.environ.get("ROTORJAX_NOTEBOOK_SMALL", "") not in ("", "0")
MODE = "small (CI) size" if SMALL else "full size"

matplotlib.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "axes.grid": True, "grid.alpha": 0.3,
                            "font.size": 10, "figure.figsize": (10, 4)})


def size(full, small):
    """``small`` in the CI smoke run, ``full`` otherwise."""
    return small if SMALL else full


class _KeyRecorder:
    """A one-layer stand-in for a KV cache (``rotorjax.kvcache`` protocol): it keeps the keys it is
    handed and attends over the chunk itself, exactly as the model does without a cache."""

    def __init__(self, positions):
        self.positions, self.keys = positions, None

    def update(self, k, v):
        from rotorjax import kvcache

        self.keys = np.asarray(k)
        return kvcache.DenseView.of_chunk(k, v, self.positions)


class _Recorder:
    def __init__(self, n_layers, positions):
        self.layers = [_KeyRecorder(positions) for _ in range(n_layers)]
        self.length = 0  # the chunk starts at position 0


def capture_keys(model, tokens) -> np.ndarray:
    """Post-RoPE keys of every layer for one sequence ``tokens (T,)``: ``(layers, kv_heads, T, head_dim)``."""
    tokens = jnp.asarray(tokens, jnp.int32)[None]
    recorder = _Recorder(model.cfg.n_layers, jnp.arange(tokens.shape[1], dtype=jnp.int32))
    model(tokens, recorder)
    return np.stack([layer.keys[0] for layer in recorder.layers])


def wikipedia_tokens(tokenizer, n: int, start: int = 0) -> np.ndarray:
    """``n`` consecutive tokens of the committed Wikipedia text, from token ``start``."""
    from rotorjax.eval import wikitext

    ids = np.asarray(tokenizer.encode(wikitext.load()), np.int32)
    if start + n > len(ids):
        raise ValueError(f"the text has {len(ids)} tokens, fewer than {start} + {n}")
    return ids[start:start + n]
