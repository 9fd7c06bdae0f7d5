"""``taskgram`` (the console command, :func:`taskgram.cli.run`) exits with the command's status after
the exit handlers ran and the output is flushed, and waits for threads that are still working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_CHILD = """
import atexit, sys, threading, time
atexit.register(print, "exit handler ran")
print("buffered output", end="")  # no newline: still in the buffer at exit
if sys.argv[1] == "thread":
    def work():
        time.sleep(0.3)
        print(" thread finished", end="")
    threading.Thread(target=work).start()
from taskgram.cli import run
sys.argv = ["taskgram", "verify", sys.argv[2]]
run()
"""


def _run(mode: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    stdout = tmp_path / f"{mode}.out"  # a file, not a pipe: its buffer is flushed only at exit
    with stdout.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, mode, str(tmp_path / "no-index")],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    proc.stdout = stdout.read_text()
    return proc


def test_run_exits_with_the_status_after_handlers_and_flush(tmp_path: Path) -> None:
    proc = _run("plain", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("taskgram verify: error: ") and "no-index" in proc.stderr
    assert proc.stdout == "buffered outputexit handler ran\n"


def test_run_waits_for_a_working_thread(tmp_path: Path) -> None:
    proc = _run("thread", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.startswith("buffered output") and "thread finished" in proc.stdout
    assert proc.stdout.endswith("exit handler ran\n")
