"""Runs every CUDA kernel instantiation family once on small inputs, for compute-sanitizer (memcheck,
racecheck): fast and generic encode / decode / rotate, QJL, scores, grouped scores, attention_decode
with masking, and compares each with the pure-JAX reference so a wrong result also fails.

    compute-sanitizer --tool memcheck python ffi/cuda/sanitize.py
"""

import jax
import jax.numpy as jnp
import numpy as np

from rotorjax import TurboQuant, _ffi, attention, rotations

assert "cuda" in _ffi.platforms(), _ffi._load_errors
key = jax.random.key(7)


def close(a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
    assert err <= tol, err


with jax.default_matmul_precision("highest"):
    for kind, dim, bits, qjl in (("rotor-mix", 128, 4, False), ("iso", 37, 3, False), ("rotor-mix", 128, 3, True)):
        kq = TurboQuant(dim, bits, kind, qjl=qjl, key=key)
        rq = TurboQuant(dim, bits, kq.rotation, qjl=qjl, key=key, backend="jax")
        x = jax.random.normal(key, (300, dim), jnp.bfloat16)
        codes = kq.encode(x)
        ref = rq.encode(x)
        close(kq.decode(ref).astype(jnp.float32), rq.decode(ref).astype(jnp.float32), 1e-2)
        q = jax.random.normal(key, (5, dim))
        close(kq.scores(q, ref), rq.scores(q, ref), 1e-5)
        jax.block_until_ready(codes)
    for kind in ("rotor-mix", "hadamard"):
        rot = rotations.make(kind, 128, key)
        x = jax.random.normal(key, (259, 128))
        close(rot.inverse(rot.apply(x, "auto"), "auto"), x, 1e-5)
    # Word-wise scores and attention: one index per lookup at 4 bits, pair tables at 2 and 3 bits.
    for (kb, kkind), (vb, vkind) in (((4, "rotor-mix"), (2, "hadamard")), ((3, "rotor-mix"), (3, "rotor-mix"))):
        kq = TurboQuant(128, kb, kkind, key=key)
        vq = TurboQuant(128, vb, vkind, key=key)
        kc = kq.encode(jax.random.normal(key, (2, 2, 300, 128)))
        vc = vq.encode(jax.random.normal(jax.random.fold_in(key, 1), (2, 2, 300, 128)))
        q = jax.random.normal(key, (2, 2, 5, 128))
        close(attention.grouped_scores(kq, q, kc), attention.grouped_scores(kq, q, kc, backend="jax"), 1e-5)
        lengths = jnp.array([300, 140], jnp.int32)
        for hq, s in ((8, 1), (4, 3)):
            q = jax.random.normal(key, (2, hq, s, 128))
            close(attention.attention_decode(q, kq, kc, vq, vc, lengths),
                  attention.attention_decode(q, kq, kc, vq, vc, lengths, backend="jax"), 1e-5)
print("sanitize.py: all kernels ran and matched the reference")
