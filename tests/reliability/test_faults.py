"""Fault injection: a killed build, a full disk and damaged shard files never yield a wrong index, and a
damaged index is refused by name while the other indexes keep serving."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.format import MANIFEST_FILE, SUFFIX_ARRAY_FILE, TOKENS_FILE
from indexer.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample-en.jsonl.zst"


def _build_cmd(output: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "taskgram.cli",
        "build",
        str(SAMPLE),
        "--output",
        str(output),
        "--quiet",
        *extra,
    ]


def _checksums(index: Path) -> dict[str, str]:
    manifest = read_manifest(index)
    return {f"{s.name}/{name}": info.sha256 for s in manifest.shards for name, info in s.files.items()}


@pytest.fixture(scope="module")
def reference_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete build of the sample corpus in 8 shards (``--memory 2M``)."""
    out = tmp_path_factory.mktemp("ref") / "index"
    subprocess.run(_build_cmd(out, "--memory", "2M"), check=True, cwd=REPO)
    return out


def _run_until(cmd: list[str], marker: bytes, timeout: float = 300.0) -> subprocess.Popen[bytes]:
    """Start ``cmd`` and return as soon as ``marker`` appears on its stderr (its progress output)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, f"the build ended before {marker!r}: {seen[-2000:]!r}"
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout} s"
        seen += chunk
    return proc


# Progress markers of the builder's phases; shard 3 of 8 is mid-build, shard 7 the last before the manifest.
PHASES = {
    "reading and tokenizing": b"read+tokenize",
    "sorting": b"sort shard 3",
    "writing": b"write+hash shard 3",
    "publishing": b"write+hash shard 7",
}


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASES))
def test_kill9_in_each_build_phase_leaves_no_complete_index_and_rerun_finishes(
    reference_build: Path, tmp_path: Path, phase: str
) -> None:
    out = tmp_path / "index"
    cmd = [arg for arg in _build_cmd(out, "--memory", "2M") if arg != "--quiet"]  # progress bars on stderr
    proc = _run_until(cmd, PHASES[phase])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.stderr is not None
    proc.stderr.close()
    if (out / MANIFEST_FILE).exists():
        # Killed after publishing (the manifest is written last): the index must be whole and correct.
        assert _checksums(out) == _checksums(reference_build)
    subprocess.run(_build_cmd(out, "--memory", "2M"), check=True, cwd=REPO)
    assert _checksums(out) == _checksums(reference_build)
    assert not list(out.glob("*.partial"))


def test_full_disk_fails_cleanly(tmp_path: Path) -> None:
    """A write that fails for lack of space (RLIMIT_FSIZE makes writes past 256 KiB fail with EFBIG, as a
    full disk fails with ENOSPC) ends the build with one clear error line and no published index."""
    out = tmp_path / "index"

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))

    proc = subprocess.run(
        _build_cmd(out), cwd=REPO, preexec_fn=limit_file_size, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error" in proc.stderr.lower() and ("File too large" in proc.stderr or "space" in proc.stderr)
    assert not (out / MANIFEST_FILE).exists()


def _flip_one_bit(path: Path, offset: int) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def _damaged_copy(sample_index: Path, dest: Path, damage: str) -> Path:
    shutil.copytree(sample_index, dest)
    shard = dest / read_manifest(dest).shards[0].name
    if damage == "bitflip":
        _flip_one_bit(shard / SUFFIX_ARRAY_FILE, (shard / SUFFIX_ARRAY_FILE).stat().st_size // 2)
    elif damage == "truncate":
        path = shard / TOKENS_FILE
        os.chmod(path, 0o644)
        os.truncate(path, path.stat().st_size - 2)
    else:
        raise ValueError(damage)
    return dest


@pytest.mark.parametrize("damage", ["bitflip", "truncate"])
def test_verify_detects_damaged_shard(sample_index: Path, tmp_path: Path, damage: str) -> None:
    index = _damaged_copy(sample_index, tmp_path / "index", damage)
    proc = subprocess.run(
        [sys.executable, "-m", "taskgram.cli", "verify", str(index), "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    wanted = "sha256" if damage == "bitflip" else "bytes"
    assert wanted in proc.stderr, proc.stderr


@pytest.mark.parametrize("damage", ["bitflip", "truncate"])
def test_service_refuses_damaged_index_and_keeps_serving_others(
    sample_index: Path, tmp_path: Path, damage: str
) -> None:
    from service.app import create_app
    from service.settings import Settings

    broken = _damaged_copy(sample_index, tmp_path / "broken", damage)
    settings = Settings(indexes={"good": sample_index, "broken": broken}, verify_checksums=True)
    with TestClient(create_app(settings)) as client:
        good = client.post("/v1/count", json={"index": "good", "queries": ["the", "suffix array"]})
        assert good.status_code == 200, good.text
        assert good.json()["results"][0] > 0
        refused = client.post("/v1/count", json={"index": "broken", "queries": ["the"]})
        assert refused.status_code in (404, 503), refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        detail = json.dumps(refused.json())
        assert "broken" in detail
        assert ("sha256" in detail) if damage == "bitflip" else ("bytes" in detail)
