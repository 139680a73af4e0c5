"""Execute the notebooks top to bottom with nbclient.

    python notebooks/run.py                 # full size, outputs written back into the notebooks
    python notebooks/run.py 03_learned_rotors.ipynb
    ROTORJAX_NOTEBOOK_SMALL=1 python notebooks/run.py --check   # smoke run, nothing written

Written notebooks keep only what a reader needs: execution counts, per-cell and notebook metadata other
than the kernel spec are dropped, so re-running changes only real outputs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import nbclient
import nbformat

HERE = pathlib.Path(__file__).resolve().parent
NOTEBOOKS = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))


def execute(path: pathlib.Path, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run ``path`` in a fresh kernel whose working directory is this folder (so ``import common``
    works) and with the repository root importable; raises ``nbclient.exceptions.CellExecutionError``."""
    nb = nbformat.read(path, as_version=4)
    pythonpath = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(HERE)}}).execute(env={**os.environ, "PYTHONPATH": pythonpath})
    return nb


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.execution_count = None
            for out in cell.outputs:
                out.pop("execution_count", None)
                out.get("metadata", {}).clear()
    return nb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="notebook file names (default: all)")
    p.add_argument("--check", action="store_true", help="run only; do not write outputs back")
    args = p.parse_args(argv)
    paths = [HERE / n for n in args.names] if args.names else NOTEBOOKS
    for path in paths:
        start = time.perf_counter()
        nb = execute(path)
        if not args.check:
            nbformat.write(strip(nb), path)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
