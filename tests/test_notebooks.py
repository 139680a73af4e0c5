"""Every notebook runs top to bottom in its small-size mode (``ROTORJAX_NOTEBOOK_SMALL=1``).

The notebooks that use SmolLM2 need its GGUF (fetched into the user cache on first use); where it cannot
be fetched they are skipped, like the model tests.
"""

import importlib.util
import json
import pathlib

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
_spec = importlib.util.spec_from_file_location("notebooks_run", NOTEBOOKS / "run.py")
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


def _uses_model(path: pathlib.Path) -> bool:
    return any("load_pretrained" in "".join(c["source"]) for c in json.loads(path.read_text())["cells"])


@pytest.mark.parametrize("path", run.NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_small(path, monkeypatch):
    if _uses_model(path):
        from rotorjax.models import download

        try:
            download.fetch()
        except download.DownloadError as e:
            pytest.skip(f"SmolLM2 GGUF not downloadable here: {e}")
    monkeypatch.setenv("ROTORJAX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = run.execute(path, timeout=600)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_committed_notebooks_have_full_size_outputs():
    """The committed notebooks carry outputs from a full-size run (their first cell prints ``common.MODE``),
    and no cell failed."""
    assert run.NOTEBOOKS, "no notebooks found"
    for path in run.NOTEBOOKS:
        outputs = [o for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
        text = "".join("".join(o.get("text", "")) for o in outputs)
        assert "full size" in text and "small (CI) size" not in text, f"{path.name} lacks full-size outputs"
        assert not [o for o in outputs if o["output_type"] == "error"], f"{path.name} has errors"
