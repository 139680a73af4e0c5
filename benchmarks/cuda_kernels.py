"""CUDA kernel benchmarks (issue 7), every row measured side by side in one run on one GPU.

Encode / decode: N = 4,194,304 vectors, d = 128, 4 bits, rotor-mix, against a jitted copy of the input
(the bandwidth ceiling), TurboQuant with a dense Haar rotation in plain jitted JAX, and the plain-JAX
rotor-mix path. Scores and attention_decode: a cache of 16 sequences × 32,768 tokens × 8 KV heads ×
d 128 coded at 4, 3 and 2 bits, against bf16 jnp.einsum scores and jax.nn.dot_product_attention (bf16,
GQA 4:1, one new token).

Floors are bytes that must move (inputs read once, outputs written once) at the measured copy bandwidth
(bytes read + written by the copy / its time). Times are medians of 5 batches of asynchronously
dispatched calls (the host never waits between calls of a batch).

    python benchmarks/cuda_kernels.py [--json out.json] [--sections codec,scores,attention]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from rotorjax import TurboQuant, attention

N, D, BITS = 4_194_304, 128, 4
B, HKV, T, G = 16, 8, 32_768, 4


def bench(fn, *args, iters=10, reps=5) -> float:
    """Median milliseconds per call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / iters)
    return float(np.median(times)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--sections", default="codec,scores,attention", help="comma-separated subset to run")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    dev = jax.devices()[0]
    rows, info = [], {"gpu": dev.device_kind, "jax": jax.__version__}
    key = jax.random.key(0)

    def row(section, name, ms, nbytes, floor_ms=None, base=None):
        r = {"section": section, "name": name, "ms": ms, "GBps": nbytes / ms / 1e6,
             "floor_frac": floor_ms / ms if floor_ms else None, "vs": {k: v / ms for k, v in (base or {}).items()}}
        rows.append(r)
        vs = ", ".join(f"{v:.2f}x vs {k}" for k, v in r["vs"].items())
        floor = "" if floor_ms is None else f"  {floor_ms / ms:.0%} of floor"
        print(f"{section:10s} {name:44s} {ms:8.3f} ms {r['GBps']:8.0f} GB/s{floor}  {vs}", flush=True)
        return ms

    # --- encode / decode ----------------------------------------------------------------------
    kq = TurboQuant(D, BITS, "rotor-mix", key=key)
    jq = TurboQuant(D, BITS, kq.rotation, key=key, backend="jax")
    hq = TurboQuant(D, BITS, "haar", key=key, backend="jax")
    code_bytes = N * (D * BITS // 8 + 4)
    for dtype in (jnp.float32, jnp.bfloat16):
        name = jnp.dtype(dtype).name
        if "codec" not in sections:  # the copy ceiling alone: the other floors need it
            info[f"copy_GBps_{name}"] = 2 * N * D * jnp.dtype(dtype).itemsize / bench(
                jax.jit(lambda x: -x), jax.random.normal(key, (N, D), dtype)) / 1e6
            continue
        es = jnp.dtype(dtype).itemsize
        x = jax.random.normal(key, (N, D), dtype)
        copy = row("ceiling", f"copy {name}", bench(jax.jit(lambda x: -x), x), 2 * N * D * es)
        floor_enc = (N * D * es + code_bytes) / (2 * N * D * es) * copy
        haar = row("encode", f"dense-Haar pipeline, plain JAX, {name}", bench(jax.jit(hq.encode), x),
                   N * D * es + code_bytes, floor_enc)
        rotor = row("encode", f"rotor-mix pipeline, plain JAX, {name}", bench(jax.jit(jq.encode), x),
                    N * D * es + code_bytes, floor_enc)
        row("encode", f"rotorjax CUDA encode, {name}", bench(jax.jit(kq.encode), x), N * D * es + code_bytes,
            floor_enc, {"dense-Haar JAX": haar, "rotor-mix JAX": rotor})
        codes = kq.encode(x)
        hcodes = hq.encode(x)
        del x
        floor_dec = floor_enc  # the same bytes, the other way round
        haar_d = row("decode", f"dense-Haar decode, plain JAX, {name}", bench(jax.jit(hq.decode), hcodes),
                     N * D * es + code_bytes, floor_dec)
        rotor_d = row("decode", f"rotor-mix decode, plain JAX, {name}", bench(jax.jit(jq.decode), codes),
                      N * D * es + code_bytes, floor_dec)
        row("decode", f"rotorjax CUDA decode, {name}", bench(jax.jit(kq.decode), codes), N * D * es + code_bytes,
            floor_dec, {"dense-Haar JAX": haar_d, "rotor-mix JAX": rotor_d})
        info[f"copy_GBps_{name}"] = 2 * N * D * es / copy / 1e6
        del codes, hcodes

    if sections & {"scores", "attention"}:
        # --- scores and attention on a cache ---------------------------------------------------------
        bw = info["copy_GBps_float32"] * 1e6  # bytes per ms
        kk, vk, qk = jax.random.split(key, 3)
        k_bf16 = jax.random.normal(kk, (B, HKV, T, D), jnp.bfloat16)
        v_bf16 = jax.random.normal(vk, (B, HKV, T, D), jnp.bfloat16)
        cache = {}
        for bits in (4, 3, 2):
            k_quant = TurboQuant(D, bits, "rotor-mix", key=kk)
            v_quant = TurboQuant(D, bits, "rotor-mix", key=vk)
            cache[bits] = (k_quant, k_quant.encode(k_bf16), v_quant, v_quant.encode(v_bf16))
        k_quant, kc, _, _ = cache[4]
        kbytes = B * HKV * T * (D * 4 // 8 + 4)
        for g in (1, G) if "scores" in sections else ():
            q = jax.random.normal(qk, (B, HKV, g, D), jnp.bfloat16)
            out_bytes = B * HKV * g * T * 4
            ein = row("scores", f"bf16 einsum, {g} query/KV head", bench(jax.jit(
                lambda q, k: jnp.einsum("bhgd,bhtd->bhgt", q, k, preferred_element_type=jnp.float32)), q, k_bf16),
                B * HKV * T * D * 2 + out_bytes)
            base = {"bf16 einsum": ein}
            if g == 1:
                base["plain-JAX codes"] = row(
                    "scores", "plain-JAX scores from 4-bit codes, 1 query",
                    bench(jax.jit(lambda q, c: attention.grouped_scores(k_quant, q, c, backend="jax")), q, kc),
                    kbytes + out_bytes, (kbytes + out_bytes) / bw)
            for bits in (4, 3, 2):  # 3 and 2 bits: the index-pair tables
                quant, codes = cache[bits][:2]
                nbytes = B * HKV * T * (D * bits // 8 + 4) + out_bytes
                row("scores", f"rotorjax CUDA scores K{bits}, {g} query/KV head",
                    bench(jax.jit(lambda q, c: attention.grouped_scores(quant, q, c)), q, codes),
                    nbytes, nbytes / bw, base)

        if "attention" in sections:
            lengths = jnp.full((B,), T, jnp.int32)
            q = jax.random.normal(qk, (B, HKV * G, 1, D), jnp.bfloat16)
            dpa = row("attention", "jax.nn.dot_product_attention bf16 GQA 4:1", bench(jax.jit(
                lambda q, k, v: jax.nn.dot_product_attention(q, k, v)), q.transpose(0, 2, 1, 3),
                k_bf16.transpose(0, 2, 1, 3), v_bf16.transpose(0, 2, 1, 3)), 2 * B * HKV * T * D * 2)
            for bits in (4, 3, 2):
                k_quant, kc, v_quant, vc = cache[bits]
                nbytes = 2 * B * HKV * T * (D * bits // 8 + 4)
                row("attention", f"rotorjax CUDA attention_decode K{bits}/V{bits}", bench(jax.jit(
                    lambda q, kc, vc: attention.attention_decode(q, k_quant, kc, v_quant, vc, lengths)), q, kc, vc),
                    nbytes, nbytes / bw, {"dot_product_attention": dpa})
                ref = attention.attention_decode(q[:2], k_quant, kc[:2], v_quant, vc[:2], lengths[:2], backend="jax")
                got = attention.attention_decode(q[:2], k_quant, kc[:2], v_quant, vc[:2], lengths[:2])
                err = float(jnp.linalg.norm((got - ref).astype(jnp.float32)) / jnp.linalg.norm(ref.astype(jnp.float32)))
                print(f"attention K{bits}/V{bits} vs plain-JAX reference (2 sequences, bf16 out): rel err {err:.2e}")

    print(f"\nGPU: {info['gpu']}, jax {info['jax']}")
    print("| section | what | ms | GB/s | floor | ratios |\n|---|---|---|---|---|---|")
    for r in rows:
        floor = "" if r["floor_frac"] is None else f"{r['floor_frac']:.0%}"
        vs = ", ".join(f"{v:.2f}× vs {k}" for k, v in r["vs"].items())
        print(f"| {r['section']} | {r['name']} | {r['ms']:.3f} | {r['GBps']:.0f} | {floor} | {vs} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
