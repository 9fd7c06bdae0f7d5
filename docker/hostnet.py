"""Write compose.yaml's host-network variant, for engines that must create no bridge network (e.g.
``dockerd --bridge=none --iptables=false``): every container shares the host's network, nothing is
published (there is nothing to publish on the host network, and docker-compose 1.x refuses port bindings
there), the service listens on 127.0.0.1:${TASKGRAM_HOST_PORT} only and the evaluation reaches it there.
docker/check.sh runs the stack with it:

    python3 docker/hostnet.py [--nofile N] > /tmp/compose.hostnet.yaml
    docker compose --project-directory . -f /tmp/compose.hostnet.yaml up -d     # or docker-compose 1.29

The output is JSON (which is YAML), relative paths and ``${VARIABLES}`` as in compose.yaml, so run it with
the repository as the project directory. ``--nofile N`` lowers compose.yaml's open-file limit (65536) to
what an engine started with a lower hard limit can give its containers. Needs PyYAML (Debian:
python3-yaml, a dependency of docker-compose).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "compose.yaml"
PORT = "${TASKGRAM_HOST_PORT:-8000}"


def host_network(compose: dict[str, Any], nofile: int | None = None) -> dict[str, Any]:
    """compose.yaml (as loaded, anchors merged) turned into its host-network variant."""
    out = {key: value for key, value in compose.items() if not key.startswith("x-")}
    for name, service in out["services"].items():
        service.pop("ports", None)
        service.pop("networks", None)
        service["network_mode"] = "host"
        if nofile is not None and "nofile" in service.get("ulimits", {}):
            service["ulimits"]["nofile"] = {"soft": nofile, "hard": nofile}
        env = service.setdefault("environment", {})
        if not isinstance(env, dict):
            raise SystemExit(f"{COMPOSE_FILE}: services.{name}.environment must be a mapping")
        if "TASKGRAM_PORT" in env:  # the service itself
            env["TASKGRAM_HOST"] = "127.0.0.1"
            env["TASKGRAM_PORT"] = PORT
        if "TASKGRAM_SERVICE_URL" in env:  # the evaluations
            env["TASKGRAM_SERVICE_URL"] = f"http://127.0.0.1:{PORT}"
    # no network of the project's own: its default network is Docker's existing `host` network
    out["networks"] = {"default": {"name": "host", "external": True}}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nofile", type=int, help="open-file limit (soft and hard) of every container")
    args = parser.parse_args(argv)
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    json.dump(host_network(compose, args.nofile), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
