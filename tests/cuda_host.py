"""Pieces of the CUDA headers (ffi/cuda) as host C++, for the CPU checks of the kernels' index and
packing arithmetic (run through the run_cxx fixture)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def host_source(header: str, *spans: tuple[str, str]) -> str:
    """The text of ffi/cuda/<header> from each span's start marker up to its end marker, with the
    __host__ __device__ qualifiers dropped; asserts that nothing else of CUDA is left."""
    text = (ROOT / "ffi" / "cuda" / header).read_text()
    code = "\n".join(text[text.index(start):text.index(end)] for start, end in spans)
    code = code.replace("__host__ __device__ __forceinline__", "inline").replace("__host__ __device__", "")
    assert not re.search(r"__\w+__\s|threadIdx|blockIdx", code.replace("__CUDA_ARCH__", "")), "CUDA left in the host version"
    return code
