"""Expensive queries: a request over its time budget gets a clear 503 problem answer (never a partial
number), and while it runs the server keeps answering other clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from indexer.manifest import open_shard, read_manifest

REPO = Path(__file__).resolve().parents[2]
TIME_BUDGET_S = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(sample_index: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskgram.cli",
            "serve",
            str(sample_index),
            "--name",
            f"sample={sample_index}",
            "--port",
            str(port),
            "--time-budget",
            str(TIME_BUDGET_S),
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "taskgram serve exited"
            assert time.monotonic() < deadline, "taskgram serve did not become healthy"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _frequent_token_pairs(sample_index: Path, n_pairs: int) -> list[list[dict[str, list[int]]]]:
    """Distinct pairs of the corpus's most frequent tokens: each windowed query scans many occurrences."""
    manifest = read_manifest(sample_index)
    shard = open_shard(sample_index, manifest, manifest.shards[0])
    counts = np.bincount(shard.tokens[shard.tokens != manifest.separator_id])
    top = np.argsort(counts)[::-1][:200]
    pairs = [[{"ids": [int(a)]}, {"ids": [int(b)]}] for a in top for b in top if a != b]
    return pairs[:n_pairs]


def test_over_budget_request_is_refused_while_others_are_served(server: str, sample_index: Path) -> None:
    heavy_body = {"index": "sample", "window": 50_000, "queries": _frequent_token_pairs(sample_index, 20_000)}
    heavy: dict[str, object] = {}

    def send_heavy() -> None:
        heavy["start"] = time.monotonic()
        heavy["response"] = httpx.post(f"{server}/v1/cooccurrence/windowed", json=heavy_body, timeout=300)
        heavy["end"] = time.monotonic()

    thread = threading.Thread(target=send_heavy)
    thread.start()
    small: list[tuple[float, float, int, list[int]]] = []
    with httpx.Client(base_url=server, timeout=60) as client:
        while thread.is_alive():
            t0 = time.monotonic()
            r = client.post("/v1/count", json={"index": "sample", "queries": ["the", "suffix"]})
            small.append((t0, time.monotonic(), r.status_code, r.json().get("results", [])))
            time.sleep(0.02)
    thread.join()

    response = heavy["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 503 and "budget" in (problem["title"] + problem["detail"]).lower()
    assert "results" not in problem  # a refusal, never a partial answer

    # Other clients were answered, correctly, while the expensive request was being worked on.
    during = [s for s in small if s[0] >= heavy["start"] and s[1] <= heavy["end"]]  # type: ignore[operator]
    assert during, "no small request completed while the expensive one ran"
    assert all(status == 200 for _, _, status, _ in small)
    assert len({tuple(results) for *_, results in small}) == 1
