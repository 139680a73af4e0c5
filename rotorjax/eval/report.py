"""Markdown tables (and one combined plot) from result files of ``python -m rotorjax.eval``::

    python -m rotorjax.eval.report RESULTS.json ... [--plot sweep.png] > tables.md

For each file: the command that produced it, a table of every row, a rotation × bits pivot of the
perplexity change and KL (for the default sinks/recent/centring rows), and the needle results.
"""

from __future__ import annotations

import argparse
import json
import sys

from rotorjax.eval.__main__ import plot


def _fmt_rows(rows):
    out = ["| context | config | perplexity | vs dense | KL (nats) | top-1 agree | bytes/token | tokens/s |",
           "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        tps = "" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.0f}"
        out.append(f"| {r['context']} | {r['config']} | {r['ppl']:.3f} | {r['ppl_delta_pct']:+.2f}% | {r['kl']:.4f} | "
                   f"{r['top1_agree']:.3f} | {r['bytes_per_token']:.0f} | {tps} |")
    return out


def _pivot(rows):
    base = [r for r in rows if r["spec"] is not None and r["spec"]["sinks"] and r["spec"]["center_keys"]]
    bits = sorted({(r["spec"]["k_bits"], r["spec"]["v_bits"]) for r in base}, reverse=True)
    rots = list(dict.fromkeys(r["spec"]["k_rotation"] for r in base))
    out = []
    for ctx in sorted({r["context"] for r in base}):
        out += [f"Context {ctx}: perplexity change vs dense / KL (nats)", "",
                "| rotation | " + " | ".join(f"K{k}V{v}" for k, v in bits) + " |", "|---|" + "---:|" * len(bits)]
        for rot in rots:
            cells = []
            for k, v in bits:
                hit = [r for r in base if r["context"] == ctx and r["spec"]["k_rotation"] == rot
                       and (r["spec"]["k_bits"], r["spec"]["v_bits"]) == (k, v)]
                cells.append(f"{hit[0]['ppl_delta_pct']:+.2f}% / {hit[0]['kl']:.4f}" if hit else "")
            out.append(f"| {rot} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def _needles(needle):
    out = ["| config | haystack | length | depth | passkey | answer | found |", "|---|---|---:|---:|---:|---|---|"]
    for n in needle:
        out.append(f"| {n['config']} | {n['haystack']} | {n['length']} | {n['depth']} | {n['passkey']} | "
                   f"`{n['answer'].strip()}` | {'yes' if n['found'] else 'no'} |")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m rotorjax.eval.report", description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--plot", help="one PNG of all files' rows")
    args = p.parse_args(argv)
    all_rows = []
    for f in args.files:
        with open(f) as fh:
            res = json.load(fh)
        rows = res["rows"]
        all_rows += rows
        lines = [f"### {f}", "", f"`{res['command']}`", ""]
        if len({r['config'] for r in rows}) > 8:
            lines += _pivot(rows)
        lines += _fmt_rows(rows) + [""]
        if res["needle"]:
            lines += _needles(res["needle"]) + [""]
        print("\n".join(lines))
    if args.plot:
        plot(all_rows, args.plot)


if __name__ == "__main__":
    sys.exit(main())
