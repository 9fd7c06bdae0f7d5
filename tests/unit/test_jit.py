"""numba's set-up without its probes for scipy.linalg and cffi (:mod:`taskgram.jit`), checked in fresh
interpreters: the probes' imports are what the set-up saves, and scipy, cffi and numba's BLAS and cffi
support still work where a process imported the library first."""

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


def test_sorting_and_counting_never_import_scipy_linalg_or_cffi():
    out = _run(
        """
        import sys
        import numpy as np
        from indexer.kernels import build_suffix_array
        from service.engine import kernels
        from indexer import verify_kernels
        sa = build_suffix_array(np.array([3, 1, 2, 1, 2, 0, 65535], dtype=np.uint16), 65535)
        print(
            sa.tolist(),
            "scipy.linalg" in sys.modules,
            sys.modules["numba.np.arraymath"]._HAVE_BLAS,
            "cffi" in sys.modules,
            sys.modules["numba.core.typing.cffi_utils"].SUPPORTED,
        )
        """
    )
    assert out == "[5, 3, 1, 4, 2, 0] False False False False"


def test_scipy_cffi_and_numba_linear_algebra_still_work_afterwards():
    pytest.importorskip("cffi", reason="cffi is not installed (numba's cffi support is optional)")
    out = _run(
        """
        import numpy as np
        import indexer.kernels
        import scipy.linalg, scipy.stats
        import cffi
        from numba import njit

        @njit
        def dot(a, b):
            return np.dot(a, b)

        ffi = cffi.FFI()
        ffi.cdef("int abs(int);")
        print(
            dot(np.arange(3.0), np.arange(3.0)),
            scipy.stats.spearmanr([1, 2, 3], [1, 3, 2])[0],
            ffi.dlopen(None).abs(-4),
        )
        """
    )
    assert out == "5.0 0.5 4"


def test_a_process_that_has_the_libraries_keeps_numbas_probes():
    pytest.importorskip("cffi", reason="cffi is not installed (numba's cffi support is optional)")
    out = _run(
        """
        import sys
        import numpy as np
        import scipy.linalg
        import cffi
        from indexer.kernels import build_suffix_array
        from numba import njit

        build_suffix_array(np.array([2, 1, 65535], dtype=np.uint16), 65535)
        ffi = cffi.FFI()
        ffi.cdef("int abs(int);")
        c_abs = ffi.dlopen(None).abs

        @njit
        def call(x):
            return c_abs(x)  # numba types cffi functions only when its probe found cffi

        print(sys.modules["numba.np.arraymath"]._HAVE_BLAS, call(-3))
        """
    )
    assert out == "True 3"
