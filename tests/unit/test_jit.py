"""numba's set-up without its BLAS probe (:mod:`taskgram.jit`), checked in fresh interpreters: the
probe's import of scipy.linalg is what the set-up saves, and scipy and numba's BLAS support still work."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    __import__("numba").config.DISABLE_JIT, reason="the probe runs when the JIT loads kernels"
)


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_sorting_and_counting_never_import_scipy_linalg():
    out = _run(
        """
        import sys
        import numpy as np
        from indexer.kernels import build_suffix_array
        from service.engine import kernels
        from indexer import verify_kernels
        sa = build_suffix_array(np.array([3, 1, 2, 1, 2, 0, 65535], dtype=np.uint16), 65535)
        print(sa.tolist(), "scipy.linalg" in sys.modules, sys.modules["numba.np.arraymath"]._HAVE_BLAS)
        """
    )
    assert out == "[5, 3, 1, 4, 2, 0] False False"


def test_scipy_and_numba_linear_algebra_still_work_afterwards():
    out = _run(
        """
        import numpy as np
        import indexer.kernels
        import scipy.linalg, scipy.stats
        from numba import njit

        @njit
        def dot(a, b):
            return np.dot(a, b)

        print(dot(np.arange(3.0), np.arange(3.0)), scipy.stats.spearmanr([1, 2, 3], [1, 3, 2])[0])
        """
    )
    assert out == "5.0 0.5"


def test_a_process_that_has_scipy_linalg_keeps_numbas_blas_probe():
    out = _run(
        """
        import sys
        import numpy as np
        import scipy.linalg
        from indexer.kernels import build_suffix_array
        build_suffix_array(np.array([2, 1, 65535], dtype=np.uint16), 65535)
        print(sys.modules["numba.np.arraymath"]._HAVE_BLAS)
        """
    )
    assert out == "True"
