"""Measurements of a compressed KV cache against the dense one on a pretrained model.

* Perplexity ``exp(mean_t -log p(x_{t+1} | x_≤t))`` over a window of ``C`` tokens, prefilled in one pass
  through the cache (each query sees sinks and its own recent window dense, older keys as codes: the
  same keys it would see when decoding token by token).
* ``KL(p_dense ‖ p_cache)`` of the next-token distributions, averaged over the window's positions.
* Needle in a haystack: a passkey sentence placed at a given depth of filler or Wikipedia text; the
  model is asked for it and greedily decodes a few tokens; success if the digits come back.
* Bytes per token of cache storage (all layers) and tokens per second of the prefill.

The model runs layer by layer with one ``nnx.jit`` per layer call: all layers share one compiled
program (per cache structure), which compiles thirty times faster than jitting the unrolled model.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rotorjax import kvcache


@nnx.jit
def _embed(model, tokens):
    return model.embed(tokens)


@nnx.jit
def _block(block, cache, x, positions):
    return block(x, positions, cache)


@nnx.jit
def _head(model, x):
    return model.head(x)


def forward(model, tokens, cache):
    """``model(tokens, cache)`` (``Llama.__call__``), jitted per layer."""
    positions = cache.length + jnp.arange(tokens.shape[1], dtype=jnp.int32)
    x = _embed(model, tokens)
    for block, layer_cache in zip(model.layers, cache.layers):
        x = _block(block, layer_cache, x, positions)
    return _head(model, x)


@jax.jit
def _log_probs(logits):
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


@jax.jit
def _compare(logits, ref_logp, targets):
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0].mean()
    kl = jnp.sum(jnp.exp(ref_logp) * (ref_logp - logp), axis=-1).mean()
    agree = jnp.mean(jnp.argmax(logp, -1) == jnp.argmax(ref_logp, -1))
    return nll, kl, agree


def make_cache(model, config: "Config | None", capacity: int, batch: int = 1):
    """The dense cache for ``None`` or a dense ``Config``; else TurboQuant caches as ``config`` says."""
    if config is None or config.spec is None:
        return kvcache.KVCache.dense(model.cfg, batch, capacity)
    spec = config.spec
    if config.boundary:
        spec = kvcache.boundary_layers(spec, model.cfg.n_layers, config.boundary, config.boundary_bits)
    return kvcache.KVCache.turboquant(model.cfg, batch, capacity, spec)


def dense_reference(model, tokens):
    """Dense-cache log-probs of one window ``tokens`` (1, C) (the KL reference)."""
    cache = make_cache(model, None, tokens.shape[1])
    return _log_probs(forward(model, tokens, cache))[:, :-1]


def score_window(model, tokens, config, ref_logp, timing: bool = False) -> dict:
    """Perplexity, KL to the dense reference and top-1 agreement for one window; with ``timing``, the
    prefill is run a second time (compiled) and its tokens per second reported."""
    cache = make_cache(model, config, tokens.shape[1])
    logits = forward(model, tokens, cache)
    nll, kl, agree = _compare(logits[:, :-1], ref_logp, tokens[:, 1:])
    out = {"ppl": float(np.exp(nll)), "kl": float(kl), "top1_agree": float(agree),
           "bytes_per_token": cache.bytes_per_token(), "tokens_per_s": None}
    if timing:
        cache = make_cache(model, config, tokens.shape[1])
        t0 = time.perf_counter()
        forward(model, tokens, cache).block_until_ready()
        out["tokens_per_s"] = tokens.shape[1] / (time.perf_counter() - t0)
    return out


PREAMBLE = ("There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it. "
            "I will quiz you about the pass key.\n\n")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
QUESTION = "\nWhat is the pass key? The pass key is"


def needle_prompt(tokenizer, haystack: str, passkey: int, depth: float, length: int) -> np.ndarray:
    """Exactly ``length`` tokens: the preamble, then the haystack with "The pass key is N. Remember it. N is
    the pass key." inserted at fraction ``depth`` of it, then the question (the passkey-retrieval prompt
    of Mohtashami & Jaggi, arXiv 2305.16300)."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    needle = tokenizer.encode(f" The pass key is {passkey}. Remember it. {passkey} is the pass key. ")
    question = tokenizer.encode(QUESTION)
    preamble = tokenizer.encode(PREAMBLE)
    n_hay = length - len(preamble) - len(needle) - len(question)
    hay = tokenizer.encode(haystack)
    if n_hay <= 0 or len(hay) < n_hay:
        raise ValueError(f"haystack too short for a {length}-token needle prompt")
    hay = hay[:n_hay]
    cut = int(round(depth * n_hay))
    return np.asarray(preamble + hay[:cut] + needle + hay[cut:] + question, np.int32)


def needle(model, tokenizer, config, haystack: str, passkey: int, depth: float, length: int, steps: int = 7) -> dict:
    prompt = jnp.asarray(needle_prompt(tokenizer, haystack, passkey, depth, length))[None]
    cache = make_cache(model, config, length + steps)
    tok = jnp.argmax(forward(model, prompt, cache)[:, -1], -1)
    out = [int(tok[0])]
    for _ in range(steps - 1):  # decode one token at a time through the cache
        tok = jnp.argmax(forward(model, tok[:, None], cache)[:, -1], -1)
        out.append(int(tok[0]))
    answer = tokenizer.decode(out)
    return {"depth": depth, "passkey": passkey, "answer": answer, "found": str(passkey) in answer}


@dataclasses.dataclass(frozen=True)
class Config:
    """One row of the sweep: a name and a cache spec (``None`` = dense); ``boundary > 0`` puts the first
    and last ``boundary`` layers at ``boundary_bits`` for K and V."""

    name: str
    spec: kvcache.QuantSpec | None = None
    boundary: int = 0
    boundary_bits: int = 4
