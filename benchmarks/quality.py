"""Quantization quality per rotation kind × bits × input family: the table in docs/quality.md.

    python benchmarks/quality.py                      # d = 128, bits 1..4, 4096 vectors per family
    python benchmarks/quality.py --dim 80 --json out.json
    python benchmarks/quality.py --keys keys.npy      # add a family of real vectors (..., dim)

MSE is ``E‖x − x̂‖² / ‖x‖²``; "ip rel. RMSE" is the RMSE of the estimated ⟨q, x⟩ (from the codes, no
debiasing) over the RMS of the true ones, for Gaussian queries; "×haar" is MSE over the dense-Haar MSE
on the same inputs. Each number averages ``--seeds`` independent rotations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import rotorjax as rj


@jax.jit
def _evaluate(tq: rj.TurboQuant, x: jax.Array, q: jax.Array):
    codes = tq.encode(x)
    mse = rj.metrics.mse(x, tq.decode(codes))
    true = q @ x.T
    err = tq.scores(q, codes) - true
    return mse, jnp.sqrt(jnp.mean(err**2) / jnp.mean(true**2))


def measure(kinds, bits_list, families: dict, dim: int, seeds: int) -> list[dict]:
    rows = []
    q = rj.inputs.isotropic(jax.random.key(12345), 64, dim)
    for family, x in families.items():
        for bits in bits_list:
            for kind in kinds:
                results = [_evaluate(rj.TurboQuant(dim, bits, kind, key=jax.random.key(s)), x, q) for s in range(seeds)]
                mse, ip = np.mean(np.asarray(results, np.float64), axis=0)
                rows.append(dict(family=family, bits=bits, kind=kind, mse=float(mse), ip_rel_rmse=float(ip)))
    for row in rows:
        haar = next(r for r in rows if r["kind"] == "haar" and r["family"] == row["family"] and r["bits"] == row["bits"])
        row["vs_haar"] = row["mse"] / haar["mse"]
    return rows


def markdown(rows, dim: int) -> str:
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    out = [f"MSE (×haar) at d = {dim}", "", "| input | bits | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for family in dict.fromkeys(r["family"] for r in rows):
        for bits in dict.fromkeys(r["bits"] for r in rows):
            cells = [next(r for r in rows if (r["family"], r["bits"], r["kind"]) == (family, bits, k)) for k in kinds]
            out.append(f"| {family} | {bits} | " + " | ".join(f"{c['mse']:.4f} ({c['vs_haar']:.2f}×)" for c in cells) + " |")
    out += ["", f"Inner-product relative RMSE at d = {dim}", "", "| input | bits | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for family in dict.fromkeys(r["family"] for r in rows):
        for bits in dict.fromkeys(r["bits"] for r in rows):
            cells = [next(r for r in rows if (r["family"], r["bits"], r["kind"]) == (family, bits, k)) for k in kinds]
            out.append(f"| {family} | {bits} | " + " | ".join(f"{c['ip_rel_rmse']:.4f}" for c in cells) + " |")
    # Padding stores more codes per vector: at b bits a kind spends padded_dim·b bits, not dim·b.
    out += ["", "| kind | padded_dim | index bytes / vector at 4 bits | params | flops (multiply-adds / vector) |",
            "|---|---|---|---|---|"]
    for kind in kinds:
        r = rj.rotations.make(kind, dim)
        out.append(f"| {kind} | {r.padded_dim} | {rj.packing.packed_size(r.padded_dim, 4)} | {r.num_params} | {r.flops} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--n", type=int, default=4096, help="vectors per input family")
    p.add_argument("--bits", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--kinds", nargs="+", default=list(rj.rotations.KINDS), choices=rj.rotations.KINDS)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--keys", help=".npy file of real vectors (..., dim), e.g. captured attention keys")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    if "haar" not in args.kinds:
        args.kinds = ["haar"] + args.kinds  # the ×haar column needs it
    families = {f: rj.inputs.make(f, jax.random.key(i), args.n, args.dim) for i, f in enumerate(rj.inputs.FAMILIES)}
    if args.keys:
        keys = np.load(args.keys).astype(np.float32)
        if keys.shape[-1] != args.dim:
            sys.exit(f"--keys has last dimension {keys.shape[-1]}, but --dim is {args.dim}")
        families["keys"] = jnp.asarray(keys.reshape(-1, args.dim))
    start = time.perf_counter()
    rows = measure(args.kinds, args.bits, families, args.dim, args.seeds)
    print(markdown(rows, args.dim))
    print(f"\n({len(rows)} configurations × {args.seeds} seeds in {time.perf_counter() - start:.0f} s; "
          f"jax {jax.__version__}, {jax.devices()[0].platform})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(dim=args.dim, n=args.n, seeds=args.seeds, jax=jax.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
