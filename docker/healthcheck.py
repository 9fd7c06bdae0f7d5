"""Container health check: exit 0 when the service answers ``GET /v1/health`` with 200 and a status of
``ok`` (or ``degraded``: some index was refused but the others serve), 1 otherwise. Standard library
only, so it runs in any image that has Python.

    python healthcheck.py [URL]     URL defaults to http://127.0.0.1:$TASKGRAM_PORT/v1/health
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def main(argv: list[str]) -> int:
    port = os.environ.get("TASKGRAM_PORT", "8000")
    url = argv[1] if len(argv) > 1 else f"http://127.0.0.1:{port}/v1/health"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        print(f"unhealthy: {url} answered {err.code}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"unhealthy: {url}: {err}", file=sys.stderr)
        return 1
    try:
        health = json.loads(body)
    except ValueError:
        print(f"unhealthy: {url} answered {status} with a body that is not JSON", file=sys.stderr)
        return 1
    state = health.get("status") if isinstance(health, dict) else None
    if status != 200 or state not in ("ok", "degraded"):
        print(f"unhealthy: {url} answered {status} with status {state!r}", file=sys.stderr)
        return 1
    print(f"{state}: indexes {health.get('indexes')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
