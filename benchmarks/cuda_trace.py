"""Where a CUDA call's time goes outside its main kernel: a GPU timeline (jax.profiler, CUPTI) of one
call each of encode (float32, N = 4,194,304, d = 128, 4 bits), grouped scores (K4, 1 query per KV head)
and attention_decode (K4/V4, GQA 4:1) at the sizes of benchmarks/cuda_kernels.py, three calls of each
queued back to back as a benchmark loop queues them. Prints every GPU operation of the three: name, start
relative to the first call's first operation, and duration, so the gaps between a call's operations
and between calls show as the GPU sees them. First, without the profiler, the host time to dispatch
a call (20 calls queued) against the time per call until they finish.

    python benchmarks/cuda_trace.py
"""

from __future__ import annotations

import glob
import gzip
import json
import tempfile
import time

import jax
import jax.numpy as jnp

from rotorjax import TurboQuant, attention

B, HKV, T, D, G = 16, 8, 32_768, 128, 4


def main():
    key = jax.random.key(0)
    quant = TurboQuant(D, 4, "rotor-mix", key=key)
    x = jax.random.normal(key, (4_194_304, D))
    kc = quant.encode(jax.random.normal(key, (B, HKV, T, D), jnp.bfloat16))
    q1 = jax.random.normal(key, (B, HKV, 1, D), jnp.bfloat16)
    qa = jax.random.normal(key, (B, HKV * G, 1, D), jnp.bfloat16)
    lengths = jnp.full((B,), T, jnp.int32)
    calls = {
        "encode f32": (jax.jit(quant.encode), (x,)),
        "grouped scores K4, 1 query": (jax.jit(lambda q, c: attention.grouped_scores(quant, q, c)), (q1, kc)),
        "attention_decode K4/V4": (jax.jit(lambda q, k, v: attention.attention_decode(q, quant, k, quant, v, lengths)),
                                   (qa, kc, kc)),
    }
    for name, (fn, args) in calls.items():  # compile and warm up outside the trace; host time per call
        jax.block_until_ready(fn(*args))
        t0 = time.perf_counter()
        outs = [fn(*args) for _ in range(20)]
        host = (time.perf_counter() - t0) / 20
        jax.block_until_ready(outs)
        total = (time.perf_counter() - t0) / 20
        print(f"{name}: host {host * 1e3:.3f} ms per call to dispatch, {total * 1e3:.3f} ms per call in all")
    log_dir = tempfile.mkdtemp()
    with jax.profiler.trace(log_dir, create_perfetto_trace=True):
        for fn, args in calls.values():
            jax.block_until_ready([fn(*args) for _ in range(3)])
            time.sleep(0.05)  # a gap on the GPU timeline between ops

    with gzip.open(glob.glob(f"{log_dir}/**/perfetto_trace.json.gz", recursive=True)[0]) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    gpu_pids = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
                and "GPU:0" in str(e.get("args", {}).get("name", ""))}
    ops = sorted((e for e in events if e.get("ph") == "X" and e.get("pid") in gpu_pids), key=lambda e: e["ts"])
    # Split the timeline at gaps over 20 ms (one op's three calls each).
    groups, current = [], []
    for e in ops:
        if current and e["ts"] - (current[-1]["ts"] + current[-1].get("dur", 0)) > 20_000:
            groups.append(current)
            current = []
        current.append(e)
    groups.append(current)
    for name, group in zip(calls, groups):
        t0 = group[0]["ts"]
        total = group[-1]["ts"] + group[-1].get("dur", 0) - t0
        print(f"\n{name}: {len(group)} GPU operations in 3 calls, {total / 1e3:.3f} ms from first start to last end")
        for e in group:
            print(f"  +{(e['ts'] - t0) / 1e3:7.3f} ms  {e.get('dur', 0) / 1e3:7.3f} ms  {e['name'][:90]}")

if __name__ == "__main__":
    main()
