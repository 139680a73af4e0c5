"""Kernel throughput: encode, decode and scores for every rotation kind, XLA FFI kernels against the
same maths in jitted pure JAX, beside a jitted copy of the input bytes and TurboQuant with a dense
Haar rotation in plain jitted JAX — all measured side by side in one run on the default platform.

    python benchmarks/kernels.py [--n 262144] [--dim 128] [--bits 4] [--queries 8] [--reps 7]
                                 [--json benchmarks/results/kernels_<platform>.json]

Each row is one jitted function on device-resident inputs; a call is timed to completion
(``block_until_ready``), ``reps`` times after a warm-up; the table shows the median and the minimum
wall time, throughput from the median, and the median CPU time of this process per call (all its
threads: XLA's and the kernels'), which other jobs on a shared machine inflate far less than wall
time. Speed-ups are ratios of median wall times, and of median CPU times in brackets. Bytes are what the operation must move: its inputs read once and its
outputs written once (for scores: the codes, norms and queries read, the score matrix written).

Rows come from the builders in ``ROWS``; a platform's extra rows (GPU kernels, ``attention_decode``)
are another builder appended there, taking the same ``Config`` and returning ``Case`` objects.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform as host
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from rotorjax import TurboQuant, ops, packing, rotations


@dataclasses.dataclass(frozen=True)
class Config:
    n: int
    dim: int
    bits: int
    queries: int
    reps: int
    platform: str


@dataclasses.dataclass
class Case:
    """One timed function: ``fn(*args)`` moves ``nbytes`` and processes ``vectors`` vectors."""

    op: str
    kind: str
    backend: str
    fn: object
    args: tuple
    vectors: int
    nbytes: int


@dataclasses.dataclass
class Row:
    op: str
    kind: str
    backend: str
    ms_median: float
    ms_min: float
    cpu_ms_median: float
    vectors: int
    nbytes: int

    @property
    def vectors_per_s(self) -> float:
        return self.vectors / (self.ms_median / 1e3)

    @property
    def gb_per_s(self) -> float:
        return self.nbytes / (self.ms_median / 1e3) / 1e9


def time_case(case: Case, reps: int) -> Row:
    jax.block_until_ready(case.fn(*case.args))  # compile and warm up
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(case.fn(*case.args))
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return Row(case.op, case.kind, case.backend, statistics.median(times), min(times), statistics.median(cpu),
               case.vectors, case.nbytes)


def _inputs(cfg: Config):
    x = jax.random.normal(jax.random.key(0), (cfg.n, cfg.dim), jnp.float32)
    q = jax.random.normal(jax.random.key(1), (cfg.queries, cfg.dim), jnp.float32)
    return x, q


def copy_rows(cfg: Config):
    """The bandwidth yardstick: read the input once, write it once."""
    x, _ = _inputs(cfg)
    yield Case("copy (x + 1)", "-", "xla", jax.jit(lambda x: x + 1.0), (x,), cfg.n, 2 * x.nbytes)


def _encoded_bytes(tq: TurboQuant, n: int) -> int:
    return n * (packing.packed_size(tq.padded_dim, tq.mse_bits) + 4)


def kernel_rows(cfg: Config):
    """encode / decode / scores per kind; the FFI and pure-JAX rows of one kind run back to back, and
    the dense-Haar pure-JAX rows are the TurboQuant baseline."""
    x, q = _inputs(cfg)
    backends = ("ffi", "jax") if cfg.platform in ops.kernel_platforms() else ("jax",)
    encode = jax.jit(lambda t, x: t.encode(x))
    decode = jax.jit(lambda t, c: t.decode(c))
    scores = jax.jit(lambda t, q, c: t.scores(q, c))
    for kind in rotations.KINDS:
        quantizers = {b: TurboQuant(cfg.dim, cfg.bits, kind, backend=b) for b in backends}
        codes = quantizers["jax"].encode(x)
        stored = _encoded_bytes(quantizers["jax"], cfg.n)
        for backend, tq in quantizers.items():
            yield Case("encode", kind, backend, encode, (tq, x), cfg.n, x.nbytes + stored)
        for backend, tq in quantizers.items():
            yield Case("decode", kind, backend, decode, (tq, codes), cfg.n, stored + x.nbytes)
        for backend, tq in quantizers.items():
            yield Case(f"scores ({cfg.queries} queries)", kind, backend, scores, (tq, q, codes), cfg.n,
                       stored + q.nbytes + 4 * cfg.queries * cfg.n)


ROWS = [copy_rows, kernel_rows]


def speedup(base: Row | None, row: Row) -> str:
    if base is None:
        return ""
    return f"{base.ms_median / row.ms_median:.2f}× ({base.cpu_ms_median / row.cpu_ms_median:.2f}×)"


def table(rows: list[Row]) -> str:
    base = {r.op: r for r in rows if r.kind == "haar" and r.backend == "jax"}
    pure = {(r.op, r.kind): r for r in rows if r.backend == "jax"}
    lines = ["| op | rotation | backend | median ms | min ms | CPU ms | Mvectors/s | GB/s | vs same kind in JAX | "
             "vs dense-Haar JAX |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        same = pure.get((r.op, r.kind))
        haar = base.get(r.op)
        lines.append(
            f"| {r.op} | {r.kind} | {r.backend} | {r.ms_median:.1f} | {r.ms_min:.1f} | {r.cpu_ms_median:.1f} | "
            f"{r.vectors_per_s / 1e6:.2f} | {r.gb_per_s:.2f} | {speedup(same, r)} | {speedup(haar, r)} |")
    return "\n".join(lines)


def machine() -> dict:
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device": device.device_kind,
        "cpu": host.processor() or host.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "python": sys.version.split()[0],
        "load_average": os.getloadavg(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=262_144)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    cfg = Config(args.n, args.dim, args.bits, args.queries, args.reps, jax.devices()[0].platform)
    info = machine()
    rows = [time_case(case, cfg.reps) for build in ROWS for case in build(cfg)]
    info["load_average_after"] = os.getloadavg()
    print(f"{info['device']} ({info['platform']}, {info['cpu_count']} CPUs), jax {info['jax']}, "
          f"N = {cfg.n:,}, d = {cfg.dim}, b = {cfg.bits}, float32; load average before/after "
          f"{info['load_average'][0]:.1f}/{info['load_average_after'][0]:.1f}")
    print(table(rows))
    out = args.json or Path(__file__).parent / "results" / f"kernels_{cfg.platform}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "config": dataclasses.asdict(cfg), "command": " ".join(sys.argv),
                               "rows": [dict(dataclasses.asdict(r), vectors_per_s=r.vectors_per_s,
                                             gb_per_s=r.gb_per_s) for r in rows]}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
