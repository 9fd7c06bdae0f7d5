"""numba's set-up for taskgram's kernels, without its probes for two optional libraries.

When numba first loads or compiles a kernel it imports two modules that each probe for an optional library
by importing it; taskgram's kernels are integer code that needs neither:

* ``numba.np.arraymath`` imports ``scipy.linalg`` to find a BLAS: 0.1 s of every build's and server's
  start-up (scipy's array API layer imports much of numpy with it). Without it numba records "no BLAS",
  which only changes how it compiles float inner products (``np.cov``, ``np.correlate``: a plain loop);
  ``np.dot`` and ``np.linalg`` still import scipy when a kernel using them is compiled.
* ``numba.core.typing.cffi_utils`` imports ``cffi`` and builds a ``cffi.FFI`` (cffi's C parser, pycparser):
  0.04 s. Without it, kernels of this process cannot call cffi functions, as when cffi is not installed.

:func:`skip_optional_probes` imports those modules while the probed library is hidden.
"""

from __future__ import annotations

import sys

# numba's module that probes -> the library it imports to probe
_PROBES = {"numba.np.arraymath": "scipy.linalg", "numba.core.typing.cffi_utils": "cffi"}


def skip_optional_probes() -> None:
    """Import numba's probing modules now, each with its library hidden (see the module docstring). A
    module already imported is left alone, and so is one whose library is imported (then the probe costs
    nothing). Call it before the first kernel loads."""
    for module, library in _PROBES.items():
        if module in sys.modules or library in sys.modules:
            continue
        sys.modules[library] = None  # type: ignore[assignment]  # an import of it raises ImportError
        try:
            __import__(module)
        finally:
            if library in sys.modules and sys.modules[library] is None:
                del sys.modules[library]
