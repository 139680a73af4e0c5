"""The CUDA kernels with the tokens sharded over every visible GPU (issue 7, "several GPUs"):
encode, decode and scores under jax.jit with the rows split across a 1-D mesh. Checks that nothing is
gathered, that the result equals the one-GPU result, and times both (N = 8,388,608 vectors, d = 128,
4 bits, rotor-mix, float32 in/out; medians of 5 batches of 10 calls).

    python benchmarks/cuda_sharded.py
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from cuda_kernels import bench  # the same timing as the one-GPU benchmarks (benchmarks/ is on sys.path)
from rotorjax import TurboQuant

N, D, BITS = 8_388_608, 128, 4


def main():
    devices = jax.devices()
    assert len(devices) >= 2, f"needs at least 2 GPUs, found {devices}"
    mesh = jax.make_mesh((len(devices),), ("tokens",))
    rows, one = NamedSharding(mesh, P("tokens")), jax.sharding.SingleDeviceSharding(devices[0])
    quant = TurboQuant(D, BITS, "rotor-mix", key=jax.random.key(0))
    x1 = jax.device_put(jax.random.normal(jax.random.key(1), (N, D)), one)
    xs = jax.device_put(x1, rows)
    q = jax.random.normal(jax.random.key(2), (4, D))

    encode = jax.jit(quant.encode)  # under jit, so the codes keep the rows' sharding
    c1, cs = encode(x1), encode(xs)
    assert cs.indices.sharding.spec[:1] == ("tokens",), cs.indices.sharding
    ops = {
        "encode": (lambda x: quant.encode(x), lambda: (x1,), lambda: (xs,)),
        "decode": (lambda c: quant.decode(c), lambda: (c1,), lambda: (cs,)),
        "scores, 4 queries": (lambda q, c: quant.scores(q, c), lambda: (jax.device_put(q, one), c1),
                              lambda: (jax.device_put(q, NamedSharding(mesh, P())), cs)),
    }
    print(f"{len(devices)} × {devices[0].device_kind}, jax {jax.__version__}, N = {N:,}")
    print("| op | 1 GPU ms | sharded ms | speed-up | max abs diff |\n|---|---|---|---|---|")
    for name, (fn, single_args, sharded_args) in ops.items():
        fn_jit = jax.jit(fn)
        sargs = sharded_args()
        text = fn_jit.lower(*sargs).compile().as_text()
        assert "all-gather" not in text and "all-to-all" not in text, f"{name}: gathered"
        got, want = fn_jit(*sargs), fn_jit(*single_args())
        diff = max(float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64))))
                   for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
        t1, ts = bench(fn_jit, *single_args()), bench(fn_jit, *sargs)
        print(f"| {name} | {t1:.3f} | {ts:.3f} | {t1 / ts:.2f}× | {diff:.2e} |", flush=True)


if __name__ == "__main__":
    main()
