"""Measuring a process tree from outside: wall seconds, CPU seconds and peak RSS of a command and all its
descendants (psutil, sampled every ``interval_s``; the wall time is exact: it ends when the command exits),
with its output. Used by ``bench_build.py`` and
``bench_scale.py`` (imported as ``proctree``: a script's own folder is first on ``sys.path``)."""

from __future__ import annotations

import contextlib
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SAMPLE_INTERVAL_S = 0.005  # the default: bench_build's suffix-array builds last seconds


def run_monitored(
    cmd: list[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    interval_s: float = SAMPLE_INTERVAL_S,
) -> dict[str, Any]:
    """Run ``cmd`` to its end; return ``wall_s``, ``cpu_s``, ``peak_rss`` (bytes, the sum over the tree
    at the sample with the most), ``returncode`` and ``output`` (stdout and stderr, decoded).

    ``cpu_s`` is the larger of what the kernel reports for the reaped descendants and the sum of the last
    CPU times sampled per process (worker pools whose children are not reaped by us are counted there).
    The sampler costs CPU itself (every 5 ms, about 13 % of a core): a long build is better sampled less
    often (``bench_scale.py``: 50 ms); a short peak is caught only by sampling often.
    """
    import psutil

    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seen: dict[int, float] = {}  # pid -> CPU seconds last seen
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = psutil.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        # The wall time ends when the process does, not at the next sample: a thread waits for it.
        ended: list[float] = []
        exited = threading.Event()

        def wait() -> None:
            proc.wait()
            ended.append(time.perf_counter())
            exited.set()

        threading.Thread(target=wait, daemon=True).start()
        peak = 0
        while not exited.is_set():
            total = 0
            try:
                procs = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                procs = [proc]
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
                    times = p.cpu_times()
                    cpu_seen[p.pid] = times.user + times.system
            peak = max(peak, total)
            exited.wait(interval_s)
        wall = ended[0] - start
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (usage.ru_utime + usage.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": max(reaped, sum(cpu_seen.values())),
        "peak_rss": peak,
        "returncode": proc.returncode,
        "output": text,
    }
