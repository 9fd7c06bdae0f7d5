"""The images build with no registry at all: docker/Dockerfile and docker/Dockerfile.eval keep to what the
Dockerfile frontend built into the Docker engine knows, with no ``# syntax`` line (which makes BuildKit
pull a frontend image from Docker Hub), and name no image but ``PYTHON_IMAGE``; the host-network variant
of compose.yaml that docker/check.sh runs (docker/hostnet.py) is valid and stays on loopback.

The supported builder is BuildKit with the engine's built-in frontend, Docker Engine 20.10 or later (the
oldest is Debian 12's docker.io 20.10.24). The flags allowed below are the ones measured to build with
that engine's built-in frontend; ``COPY --link``, heredocs, ``RUN --network``, ``COPY --exclude`` /
``--parents`` and ``ADD --checksum`` are refused there ("Unknown flag"). The legacy builder is not
supported: it ignores ``<Dockerfile>.dockerignore`` (the context would hold .venv) and refuses
``RUN --mount``, so it fails loudly at the first such instruction. ``docker/check.sh`` (``make
docker-check``) builds and runs the images for real.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="the dev extra installs pyyaml")
jsonschema = pytest.importorskip("jsonschema", reason="the dev extra installs jsonschema")

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = ["docker/Dockerfile", "docker/Dockerfile.eval"]
BASE_ARG = "PYTHON_IMAGE"

# instruction -> flags the built-in frontend of Docker Engine 20.10 accepts
ALLOWED_FLAGS = {
    "FROM": {"platform"},
    "COPY": {"from", "chown", "chmod"},
    "ADD": {"chown", "chmod"},
    "RUN": {"mount"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "retries"},
}
ALLOWED_MOUNTS = {"bind", "cache", "secret", "tmpfs", "ssh"}
# parser directives: `escape` is as old as Dockerfiles; `syntax` fetches a frontend image from a registry,
# `check` belongs to frontends newer than the built-in one
DIRECTIVE = re.compile(r"^#\s*([A-Za-z]+)\s*=")


@dataclass
class Instruction:
    line: int
    keyword: str
    flags: list[tuple[str, str]]  # (name, value) of the leading --flags
    args: str


def instructions(text: str) -> list[Instruction]:
    """Logical instructions (continuations joined, comments dropped) with their leading flags."""
    result: list[Instruction] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        pending = ""
        flags = []
        rest = rest.strip()
        while rest.startswith("--"):
            word, _, rest = rest.partition(" ")
            name, _, value = word[2:].partition("=")
            flags.append((name, value))
            rest = rest.strip()
        result.append(Instruction(start, keyword.upper(), flags, rest))
    assert not pending, "dangling line continuation"
    return result


def builder_problems(text: str, name: str = "Dockerfile") -> list[str]:
    """What in a Dockerfile needs a registry or a frontend newer than the engine's built-in one."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        m = DIRECTIVE.match(line.strip())
        if m and m.group(1).lower() != "escape":
            problems.append(
                f"{name}:{number}: parser directive `{line.strip()}`: `syntax` makes BuildKit fetch a "
                "frontend image from a registry; keep to the built-in frontend"
            )
    parsed = instructions(text)
    stages: set[str] = set()
    global_args: set[str] = set()
    seen_from = False
    for ins in parsed:
        where = f"{name}:{ins.line}: {ins.keyword}"
        allowed = ALLOWED_FLAGS.get(ins.keyword, set())
        for flag, value in ins.flags:
            if flag not in allowed:
                problems.append(f"{where} --{flag}: not known to the built-in frontend of Docker 20.10")
            if flag == "from" and value not in stages:
                problems.append(f"{where} --from={value}: not a stage of this file (an image to pull)")
            if flag == "mount":
                options = dict(o.partition("=")[::2] for o in value.split(","))
                if options.get("type", "bind") not in ALLOWED_MOUNTS:
                    problems.append(f"{where} --mount type={options.get('type')}: unknown to Docker 20.10")
                if "from" in options and options["from"] not in stages:
                    problems.append(f"{where} --mount from={options['from']}: not a stage (an image to pull)")
        if re.search(r"<<-?\s*['\"]?[A-Za-z_]", ins.args):
            problems.append(f"{where}: a heredoc (`<<`) needs Dockerfile frontend 1.4 or later")
        if ins.keyword == "ADD" and re.search(r"://|git@", ins.args):
            problems.append(f"{where}: ADD of a URL fetches from the network while building")
        if ins.keyword == "ARG" and not seen_from:
            global_args.add(ins.args.split("=")[0].strip())
        if ins.keyword == "FROM":
            seen_from = True
            words = ins.args.split()
            image = words[0]
            if image not in stages and image != f"${{{BASE_ARG}}}":
                problems.append(f"{where} {image}: the base must be ${{{BASE_ARG}}} or an earlier stage")
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
    if BASE_ARG not in global_args:
        problems.append(f"{name}: no `ARG {BASE_ARG}` before the first FROM")
    return problems


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_builds_with_the_engines_builtin_frontend(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text(encoding="utf-8")
    problems = builder_problems(text, dockerfile)
    assert not problems, "\n".join(problems)
    parsed = instructions(text)
    assert any(i.keyword == "FROM" for i in parsed)
    # pip in the build trusts the `ca` secret when given (docker/pip.sh); the secret is in no layer
    downloads = [i for i in parsed if i.keyword == "RUN" and "pip.sh install" in i.args and "-r " in i.args]
    assert downloads, f"{dockerfile}: no RUN installs the requirements with docker/pip.sh"
    for ins in downloads:
        mounts = [value for flag, value in ins.flags if flag == "mount"]
        assert any("type=secret" in m and "id=ca" in m and "required=false" in m for m in mounts), (
            f"{dockerfile}:{ins.line}: the RUN that downloads packages does not mount the `ca` secret"
        )
    for ins in parsed:
        lowered = ins.args.lower()
        assert not (ins.keyword in ("COPY", "ADD") and re.search(r"\.(pem|crt)\b|certs?/", lowered)), (
            f"{dockerfile}:{ins.line}: a CA bundle copied into a layer; give it as the build secret `ca`"
        )
        assert not (ins.keyword in ("ENV", "ARG") and "pip_cert" in lowered), (
            f"{dockerfile}:{ins.line}: PIP_CERT baked into the image; docker/pip.sh sets it per RUN"
        )


def test_the_check_catches_what_breaks_the_builtin_frontend() -> None:
    good = (REPO / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert not builder_problems(good)
    broken = {
        "# syntax=docker/dockerfile:1\n" + good: "parser directive",
        "#syntax=docker/dockerfile:1.7\n" + good: "parser directive",
        good.replace("COPY --chmod=0755", "COPY --link --chmod=0755"): "--link",
        good.replace("RUN python -m venv", "RUN --network=host python -m venv"): "--network",
        good.replace("RUN python -m venv /opt/venv", "RUN <<EOF\npython -m venv /opt/venv\nEOF"): "heredoc",
        good.replace("COPY README.md /src/", "COPY --exclude=*.pyc README.md /src/"): "--exclude",
        good.replace("FROM ${PYTHON_IMAGE}\n", "FROM python:3.12-slim\n"): "the base must be",
        good.replace("COPY --from=build", "COPY --from=ghcr.io/astral-sh/uv:latest"): "not a stage",
        good.replace("COPY README.md /src/", "ADD https://example.org/x.tar.gz /src/"): "URL",
        good.replace("ARG PYTHON_IMAGE=", "ARG OTHER_IMAGE="): "no `ARG PYTHON_IMAGE`",
    }
    for text, expected in broken.items():
        assert text != good
        problems = builder_problems(text)
        assert any(expected in p for p in problems), (expected, problems)


def test_docker_requirements_lists_what_pyproject_asks_for() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    script = REPO / "docker" / "requirements.py"
    out = subprocess.run([sys.executable, str(script), str(REPO / "pyproject.toml"), "eval"],
                         capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    expected = [*project["build-system"]["requires"], *project["project"]["dependencies"],
                *project["project"]["optional-dependencies"]["eval"]]  # fmt: skip
    assert out == expected
    bad = subprocess.run([sys.executable, str(script), str(REPO / "pyproject.toml"), "no-such-extra"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode != 0 and "no-such-extra" in bad.stderr


def test_host_network_variant_stays_on_loopback_and_keeps_the_rest(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "docker"))
    try:
        import hostnet
    finally:
        sys.path.pop(0)
    out = subprocess.run([sys.executable, str(REPO / "docker" / "hostnet.py"), "--nofile", "20000"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    variant = json.loads(out)
    original = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    schema = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft201909Validator(schema).iter_errors(variant)]
    assert not errors, errors
    assert variant["networks"] == {"default": {"name": "host", "external": True}}
    assert set(variant["services"]) == set(original["services"])
    for name, service in variant["services"].items():
        before = original["services"][name]
        assert service["network_mode"] == "host" and "ports" not in service, name
        assert service["ulimits"]["nofile"] == {"soft": 20000, "hard": 20000}, name
        env, env_before = service["environment"], before["environment"]
        if "TASKGRAM_PORT" in env_before:
            assert env["TASKGRAM_HOST"] == "127.0.0.1" and env["TASKGRAM_PORT"] == hostnet.PORT
        if "TASKGRAM_SERVICE_URL" in env_before:
            assert env["TASKGRAM_SERVICE_URL"] == f"http://127.0.0.1:{hostnet.PORT}"
        changed = {"network_mode", "ports", "ulimits", "environment"}
        assert {k: v for k, v in service.items() if k not in changed} == {
            k: v for k, v in before.items() if k not in changed
        }, name
        moved = ("TASKGRAM_HOST", "TASKGRAM_PORT", "TASKGRAM_SERVICE_URL")
        assert {k: v for k, v in env.items() if k not in moved} == {
            k: v for k, v in env_before.items() if k not in moved
        }, name
    # without --nofile, compose.yaml's limit stays
    plain = hostnet.host_network(yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8")))
    assert plain["services"]["service"]["ulimits"] == original["services"]["service"]["ulimits"]


def test_docker_check_script_parses_and_make_runs_it() -> None:
    script = REPO / "docker" / "check.sh"
    assert script.stat().st_mode & 0o111, "docker/check.sh is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text(encoding="utf-8")
    # never a bridge network: the engine it starts has none, and every container runs on the host network
    assert "dockerd --iptables=false --bridge=none" in text
    assert "docker/hostnet.py" in text and "--network none" in text
    assert re.search(r"^docker-check:\n\tdocker/check\.sh", (REPO / "Makefile").read_text(), re.M)
