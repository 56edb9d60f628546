"""Re-running kernel tests with GATEWAY_CPU_KERNELS forcing a SIMD level (`avx2`: what a CPU
without AVX-512 BF16 runs; `portable`: the plain loops), in a fresh process: the kernels read
the mode once per process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# every test that re-runs others is named ..._paths_pass_the_same_tests: left out of the re-run
RERUN_NAME = "paths_pass_the_same_tests"


def rerun_in_mode(mode: str, files: list[Path]) -> None:
    env = {**os.environ, "GATEWAY_CPU_KERNELS": mode}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            f"not {RERUN_NAME}",
            *map(str, files),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
