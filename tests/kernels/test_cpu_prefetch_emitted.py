"""The kernels' software prefetches are in the built library.

GCC deletes calls to a function that only prefetches (it counts as free of effects), and the
kernels still compute the same results without them: only this check sees them go. The
sparse FFN kernel once ran with none (docs/benchmarks.md: Non-think decode ~1.3x slower), so
the disassembly of the functions that stream weights must hold prefetch instructions."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from kernels import cpu_ops

pytestmark = pytest.mark.skipif(
    shutil.which("objdump") is None or not cpu_ops.load(), reason="needs objdump and the CPU kernels"
)

# function (demangled name fragment) -> it must prefetch
STREAMING = (
    "dots_avx512<true>",
    "dots_avx512<false>",
    "down_chunk_avx512<4>",
    "down_chunk_avx2<4>",
    "tile_avx512(float const*",
)


def _functions() -> dict[str, str]:
    library = cpu_ops.build_dir() / f"{cpu_ops.EXTENSION}.so"
    out = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", str(library)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    bodies: dict[str, str] = {}
    for block in re.split(r"\n(?=[0-9a-f]+ <)", out):
        head, _, body = block.partition("\n")
        bodies[head] = body
    return bodies


def test_the_weight_streaming_functions_prefetch() -> None:
    bodies = _functions()
    for name in STREAMING:
        found = [body for head, body in bodies.items() if name in head]
        assert found, f"{name} is not in the library"
        assert any("prefetch" in body for body in found), f"{name} has no prefetch instruction"
