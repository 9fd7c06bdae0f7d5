"""The loopback-only network namespace every Ray test runs in (Ray must reach nothing but 127.0.0.1)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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


def run_in_loopback_namespace(
    command: str, *, timeout: float, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the shell ``command`` in a new loopback-only network namespace, with the repository on
    ``PYTHONPATH``, Ray's usage stats off, no ``RAY_ADDRESS``, and ``env``; fails the test, showing the
    output's tails, when the command fails."""
    prefix = loopback_namespace_prefix()
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
        **env,
    }
    full_env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [*prefix, "sh", "-c", f"ip link set lo up && exec {command}"],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@contextlib.contextmanager
def dead_last_ray_cluster() -> Iterator[str]:
    """A Ray temp folder (for ``RAY_TMPDIR``) whose ``ray/ray_current_cluster`` records a dead cluster at
    127.0.0.1:9, as the host's last ``ray start`` would: where Ray's default ``ray.init()`` joins it.
    Removed afterwards."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths live under it
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")
        yield str(ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
