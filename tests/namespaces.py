"""The loopback-only network namespace every Ray test runs in (Ray must reach nothing but 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import pytest


def loopback_namespace_prefix() -> list[str]:
    """The command prefix (``unshare -n`` or, unprivileged, ``unshare -rn``) of a new network namespace in
    which ``ip link set lo up`` works; skips the test, with the reason, where Ray is not installed or
    network namespaces are not permitted."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'taskgram[ray]')")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) for a loopback-only network namespace")
    probe = None
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        probe = subprocess.run([*prefix, "sh", "-c", "ip link set lo up"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    reason = probe.stderr.decode().strip() if probe is not None else ""
    pytest.skip(f"network namespaces are not permitted here: {reason}")
