"""Where a CUDA call's time goes outside its main kernel: a GPU timeline (jax.profiler, CUPTI) of one
call each of encode (float32, N = 4,194,304, d = 128, 4 bits), grouped scores (K4, 1 query per KV head)
and attention_decode (K4/V4, GQA 4:1) at the sizes of benchmarks/cuda_kernels.py. Prints every GPU
operation of the last of three calls of each: name, start relative to the call's first operation, and
duration.

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
    for fn, args in calls.values():  # compile and warm up outside the trace
        jax.block_until_ready(fn(*args))
    log_dir = tempfile.mkdtemp()
    with jax.profiler.trace(log_dir, create_perfetto_trace=True):
        for fn, args in calls.values():
            for _ in range(3):
                jax.block_until_ready(fn(*args))
            time.sleep(0.05)  # a gap on the GPU timeline between ops

    with gzip.open(glob.glob(f"{log_dir}/**/perfetto_trace.json.gz", recursive=True)[0]) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    gpu_pids = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
                and "GPU:0" in str(e.get("args", {}).get("name", ""))}
    ops = sorted((e for e in events if e.get("ph") == "X" and e.get("pid") in gpu_pids), key=lambda e: e["ts"])
    # Split the timeline at gaps over 20 ms (one op's three calls each), and each op's calls at gaps over
    # 50 µs after a block_until_ready.
    groups, current = [], []
    for e in ops:
        if current and e["ts"] - (current[-1]["ts"] + current[-1].get("dur", 0)) > 20_000:
            groups.append(current)
            current = []
        current.append(e)
    groups.append(current)
    for name, group in zip(calls, groups):
        call, last_end = [], None
        for e in group:  # the last call: operations after the last gap of more than 50 µs
            if last_end is not None and e["ts"] - last_end > 50:
                call = []
            call.append(e)
            last_end = max(last_end or 0, e["ts"] + e.get("dur", 0))
        t0 = call[0]["ts"]
        total = call[-1]["ts"] + call[-1].get("dur", 0) - t0
        print(f"\n{name}: {len(call)} GPU operations, {total / 1e3:.3f} ms from first start to last end")
        for e in call:
            print(f"  +{(e['ts'] - t0) / 1e3:7.3f} ms  {e.get('dur', 0) / 1e3:7.3f} ms  {e['name'][:90]}")


if __name__ == "__main__":
    main()
