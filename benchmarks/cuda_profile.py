"""One launch of each CUDA kernel at the benchmark sizes, for Nsight Compute:

    ncu --clock-control none --section SpeedOfLight --kernel-name regex:'(Encode|Decode|Scores|Attention)(Rows|Words)?Kernel' python benchmarks/cuda_profile.py
"""

import jax
import jax.numpy as jnp

from rotorjax import TurboQuant, attention

key = jax.random.key(0)
kq = TurboQuant(128, 4, "rotor-mix", key=key)
x = jax.random.normal(key, (4_194_304, 128), jnp.float32)
codes = jax.block_until_ready(kq.encode(x))
jax.block_until_ready(kq.decode(codes))
del x
kc = jax.block_until_ready(kq.encode(jax.random.normal(key, (16, 8, 32768, 128), jnp.bfloat16)))
q = jax.random.normal(key, (16, 8, 4, 128), jnp.bfloat16)
jax.block_until_ready(attention.grouped_scores(kq, q, kc))
jax.block_until_ready(attention.grouped_scores(kq, q[:, :, :1], kc))  # 1 query per KV head
lengths = jnp.full((16,), 32768, jnp.int32)
jax.block_until_ready(attention.attention_decode(q.reshape(16, 32, 1, 128), kq, kc, kq, kc, lengths))
k3 = TurboQuant(128, 3, "rotor-mix", key=key)  # K3/V3: the 3-bit token mapping's bank conflicts
c3 = jax.block_until_ready(k3.encode(jax.random.normal(key, (16, 8, 32768, 128), jnp.bfloat16)))
jax.block_until_ready(attention.attention_decode(q.reshape(16, 32, 1, 128), k3, c3, k3, c3, lengths))
