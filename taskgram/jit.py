"""numba's set-up for taskgram's kernels, without its BLAS probe.

When numba first loads or compiles a kernel it imports its array implementations, and one of them probes
for a BLAS by importing ``scipy.linalg``: 0.1 s of every build's and server's start-up (scipy's array API
layer imports much of numpy with it), for kernels that are integer code and call no BLAS.
:func:`import_array_support` imports that module while ``scipy.linalg`` is hidden, so numba records "no
BLAS". That only changes how numba compiles float inner products (``np.cov``, ``np.correlate``: a plain
loop); ``np.dot`` and ``np.linalg`` still import scipy when a kernel using them is compiled.
"""

from __future__ import annotations

import sys

_PROBED_MODULE = "numba.np.arraymath"
_HIDDEN = "scipy.linalg"


def import_array_support() -> None:
    """Import numba's array implementations now, without the BLAS probe (see the module docstring). A
    no-op when they are imported already, or when ``scipy.linalg`` is (the probe then costs nothing)."""
    if _PROBED_MODULE in sys.modules or _HIDDEN in sys.modules:
        return
    sys.modules[_HIDDEN] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        __import__(_PROBED_MODULE)
    finally:
        if _HIDDEN in sys.modules and sys.modules[_HIDDEN] is None:
            del sys.modules[_HIDDEN]
