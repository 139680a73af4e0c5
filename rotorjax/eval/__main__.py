"""``python -m rotorjax.eval``: perplexity, KL to the dense cache, needle-in-a-haystack, bytes per token and
speed of compressed KV caches on a pretrained model, over a sweep of cache settings.

Example (the acceptance run)::

    python -m rotorjax.eval --contexts 2048 --bits 4/4 --rotations rotor-mix --out kv.json --plot kv.png

The sweep is the product of ``--bits`` (K/V pairs), ``--rotations`` (the same kind for K and V),
``--sinks-recent`` (on: ``--sinks`` first and ``--recent`` latest tokens dense; off: none) and
``--center`` (key centring on/off), at every ``--contexts`` length; the dense cache is always the first
row. Needle tests run at ``--needle-length`` tokens for the dense cache and for every configuration
whose label contains one of ``--needle-for``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import shlex
import sys
import time

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from rotorjax import kvcache, rotations
from rotorjax.eval import core, wikitext


def _bits(s: str) -> tuple[int, int]:
    try:
        k, v = (int(b) for b in s.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bits must look like K/V, e.g. 4/3, got {s!r}") from None
    return k, v


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m rotorjax.eval", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--model", default=None, help="model name known to rotorjax.models.download (default SmolLM2-135M)")
    p.add_argument("--contexts", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--windows", type=int, default=1, help="perplexity windows per context (consecutive)")
    p.add_argument("--bits", type=_bits, nargs="+", default=[(2, 2), (3, 3), (4, 4), (4, 3)])
    p.add_argument("--rotations", nargs="+", default=list(rotations.KINDS), choices=rotations.KINDS)
    p.add_argument("--sinks-recent", nargs="+", default=["on"], choices=["on", "off"])
    p.add_argument("--center", nargs="+", default=["on"], choices=["on", "off"])
    p.add_argument("--sinks", type=int, default=4)
    p.add_argument("--recent", type=int, default=64)
    p.add_argument("--boundary", type=int, default=0,
                   help="first and last N layers at --boundary-bits for K and V (0: all layers alike)")
    p.add_argument("--boundary-bits", type=int, default=4)
    p.add_argument("--backend", default="auto", choices=["auto", "jax", "ffi"],
                   help="TurboQuant backend: compiled kernels where built (auto), pure JAX, or kernels only")
    p.add_argument("--needle-length", type=int, default=2048)
    p.add_argument("--needle-depths", type=float, nargs="*", default=[0.1, 0.5, 0.9])
    p.add_argument("--needle-for", nargs="*", default=["K4V4 rotor-mix s4 r64"],
                   help="run needle tests for configurations whose label contains one of these")
    p.add_argument("--timing", action="store_true", help="time a second, compiled prefill for tokens/s")
    p.add_argument("--out", default="kvcache_eval.json", help="JSON results")
    p.add_argument("--plot", default=None, help="PNG plot of perplexity and KL against bytes per token")
    args = p.parse_args(argv)
    for c in args.contexts + [args.needle_length]:
        if c < 64:
            p.error(f"context lengths must be >= 64 tokens, got {c}")
    return args


def configs(args) -> list[core.Config]:
    out = [core.Config("dense")]
    for (kb, vb), rot, sr, ce in itertools.product(args.bits, args.rotations, args.sinks_recent, args.center):
        spec = kvcache.QuantSpec(k_bits=kb, v_bits=vb, k_rotation=rot, v_rotation=rot,
                                 sinks=args.sinks if sr == "on" else 0, recent=args.recent if sr == "on" else 0,
                                 center_keys=ce == "on", backend=args.backend)
        name = spec.label + (f" edge{args.boundary}@{args.boundary_bits}" if args.boundary else "")
        out.append(core.Config(name, spec, args.boundary, args.boundary_bits))
    return out


def format_table(rows: list[dict]) -> str:
    head = f"{'ctx':>5} {'config':<32} {'ppl':>8} {'Δppl %':>7} {'KL':>8} {'top1':>6} {'B/token':>8} {'tok/s':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['context']:>5} {r['config']:<32} {r['ppl']:>8.3f} {r['ppl_delta_pct']:>+7.2f} "
                     f"{r['kl']:>8.4f} {r['top1_agree']:>6.3f} {r['bytes_per_token']:>8.0f} "
                     + ("      -" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:>7.0f}"))
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    """Perplexity change and KL against bytes per token: one colour per rotation kind, one marker per
    context length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    contexts = sorted({r["context"] for r in rows})
    markers = dict(zip(contexts, "os^Dv<>"))
    colours = dict(zip(rotations.KINDS, plt.get_cmap("tab10").colors))
    for r in rows:
        if r["spec"] is None:
            continue
        kw = dict(marker=markers[r["context"]], color=colours[r["spec"]["k_rotation"]], s=22, alpha=0.8)
        axes[0].scatter(r["bytes_per_token"], r["ppl_delta_pct"], **kw)
        axes[1].scatter(r["bytes_per_token"], max(r["kl"], 1e-6), **kw)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=k) for k, c in colours.items()]
    handles += [plt.Line2D([], [], color="grey", marker=m, ls="", label=f"{c} tokens") for c, m in markers.items()]
    axes[0].set(xlabel="cache bytes per token (all layers)", ylabel="perplexity vs dense (%)", yscale="symlog")
    axes[1].set(xlabel="cache bytes per token (all layers)", ylabel="KL(dense ‖ cache), nats", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(handles=handles, fontsize=8, loc="upper right")
    fig.suptitle("Compressed KV caches on SmolLM2-135M-Instruct (Wikipedia text)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rotorjax.models import download, load_pretrained

    try:
        model, tokenizer = load_pretrained(args.model)
    except download.DownloadError as e:
        sys.exit(f"error: {e}")
    text = wikitext.load()
    ids = np.asarray(tokenizer.encode(text), np.int32)
    cfgs = configs(args)
    results = {"args": {k: v for k, v in vars(args).items()}, "command": shlex.join(["python", "-m", "rotorjax.eval", *(argv if argv is not None else sys.argv[1:])]),
               "model": args.model or download.DEFAULT_MODEL, "rows": [], "needle": []}
    out = pathlib.Path(args.out)

    def save():
        out.write_text(json.dumps(results, indent=1, default=str))

    for ctx in args.contexts:
        if len(ids) < ctx * args.windows + 1:
            sys.exit(f"error: the text has {len(ids)} tokens, fewer than {args.windows} windows of {ctx}")
        per_cfg = {c.name: [] for c in cfgs}
        for w in range(args.windows):
            window = jnp.asarray(ids[w * ctx:(w + 1) * ctx])[None]
            ref = core.dense_reference(model, window)
            for c in tqdm(cfgs, desc=f"context {ctx}, window {w + 1}/{args.windows}", file=sys.stderr):
                per_cfg[c.name].append(core.score_window(model, window, c, ref, args.timing))
        dense_ppl = float(np.exp(np.mean([np.log(m["ppl"]) for m in per_cfg["dense"]])))
        for c in cfgs:
            ms = per_cfg[c.name]
            ppl = float(np.exp(np.mean([np.log(m["ppl"]) for m in ms])))
            row = {"context": ctx, "config": c.name, "spec": None if c.spec is None else vars(c.spec),
                   "boundary": [c.boundary, c.boundary_bits] if c.boundary else None, "ppl": ppl,
                   "ppl_delta_pct": 100 * (ppl / dense_ppl - 1),
                   **{k: float(np.mean([m[k] for m in ms])) for k in ("kl", "top1_agree", "bytes_per_token")},
                   "tokens_per_s": None if ms[0]["tokens_per_s"] is None else float(np.mean([m["tokens_per_s"] for m in ms]))}
            results["rows"].append(row)
        save()

    needle_cfgs = [c for c in cfgs if c.spec is None or any(s in c.name for s in args.needle_for)]
    if args.needle_depths and needle_cfgs:
        haystacks = {"filler": core.FILLER * (args.needle_length // 10 + 10),
                     "wikipedia": text[len(text) // 2:]}
        jobs = list(itertools.product(needle_cfgs, haystacks, args.needle_depths))
        for i, (c, hay, depth) in enumerate(tqdm(jobs, desc="needle", file=sys.stderr)):
            passkey = 10000 + (7919 * (i % (len(haystacks) * len(args.needle_depths))) + 4271) % 90000
            r = core.needle(model, tokenizer, c, haystacks[hay], passkey, depth, args.needle_length)
            results["needle"].append({"config": c.name, "haystack": hay, "length": args.needle_length, **r})
            save()

    print(format_table(results["rows"]))
    if results["needle"]:
        print()
        for c in needle_cfgs:
            hits = [n for n in results["needle"] if n["config"] == c.name]
            marks = " ".join(f"{n['haystack'][:4]}@{n['depth']:.1f}:{'✓' if n['found'] else '✗'}" for n in hits)
            print(f"needle {c.name:<32} {sum(n['found'] for n in hits)}/{len(hits)}  {marks}")
    if args.plot:
        plot(results["rows"], args.plot)
    print(f"\nresults: {out}" + (f", plot: {args.plot}" if args.plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
