"""compose.yaml and the images under docker/, tested without a Docker engine.

1. ``compose.yaml`` is valid against the Compose Specification JSON schema. ``tests/data/compose-spec.json``
   is that schema as the ``docker-compose`` 1.29.2 wheel on PyPI ships it (``compose/config/
   compose_spec.json``, Apache-2.0), unchanged.
2. Everything it names exists in the project: build contexts, Dockerfiles, bind-mount sources, named
   volumes, the files each Dockerfile copies (and its ``.dockerignore`` lets through), the entry point; the
   container port, ``TASKGRAM_PORT`` and ``EXPOSE`` agree; every ``TASKGRAM_*`` variable is a service
   setting or is read by the project's code; every variable is documented in docs/deployment.md.
3. The commands the containers run, run here: the ``indexer`` service's entry point and command, with its
   environment (container paths mapped to temporary folders), builds the embedded sample index; the
   ``service`` container's command serves it; the compose health check passes; ``/v1/health`` and
   ``/metrics`` answer.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="the dev extra installs pyyaml")
jsonschema = pytest.importorskip("jsonschema", reason="the dev extra installs jsonschema")

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
SCHEMA_FILE = REPO / "tests" / "data" / "compose-spec.json"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"
CODE_DIRS = ("taskgram", "indexer", "service", "clients", "docker")

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


# --------------------------------------------------------------------------------------------------
# helpers: compose interpolation, Dockerfiles, .dockerignore


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR:+alt}``."""

    def substitute(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if not value:
                raise KeyError(f"compose.yaml: {name} is required: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        return value or ""

    return _VARIABLE.sub(substitute, text)


def walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(key)
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)


def map_strings(node: Any, fn: Any) -> Any:
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, dict):
        return {fn(k) if isinstance(k, str) else k: map_strings(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [map_strings(item, fn) for item in node]
    return node


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return map_strings(raw, lambda s: interpolate(s, env or {}))


@dataclass
class Dockerfile:
    path: Path
    env: dict[str, str] = field(default_factory=dict)  # of the final stage
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, destination), final stage
    all_copies: list[list[str]] = field(default_factory=list)  # sources of every stage (not --from)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    expose: list[int] = field(default_factory=list)
    user: str | None = None


def parse_dockerfile(path: Path) -> Dockerfile:
    """The instructions this project's Dockerfiles use, with line continuations and comments."""
    result = Dockerfile(path)
    logical: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":  # a new stage: keep only the final stage's settings
            result.env, result.copies, result.entrypoint, result.cmd = {}, [], [], []
            result.expose, result.user = [], None
        elif keyword == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"{path}: ENV {item!r} is not KEY=VALUE"
                result.env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
        elif keyword == "COPY":
            words = shlex.split(rest)
            flags = [w for w in words if w.startswith("--")]
            args = [w for w in words if not w.startswith("--")]
            if not any(f.startswith("--from=") for f in flags):
                result.copies.append((args[:-1], args[-1]))
                result.all_copies.append(args[:-1])
        elif keyword in ("ENTRYPOINT", "CMD"):
            value = json.loads(rest)
            assert isinstance(value, list), f"{path}: {keyword} must be in exec (JSON array) form"
            setattr(result, keyword.lower(), value)
        elif keyword == "EXPOSE":
            result.expose += [int(p.split("/")[0]) for p in rest.split()]
        elif keyword == "USER":
            result.user = rest.strip()
    return result


def dockerignore_patterns(dockerfile: Path) -> list[tuple[str, bool]]:
    """(pattern, is_exception) of ``<Dockerfile>.dockerignore`` (BuildKit reads it before the context's
    own .dockerignore)."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert ignore.is_file(), f"{dockerfile} has no {ignore.name}: the whole repository (.venv!) would be sent"
    patterns = []
    for line in ignore.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((line.lstrip("!").strip("/"), negated))
    return patterns


def is_ignored(relpath: str, patterns: list[tuple[str, bool]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern, negated in patterns:
        if any(fnmatchcase(prefix, pattern) for prefix in prefixes):
            ignored = not negated
    return ignored


def tracked_files(under: Path) -> list[Path]:
    return [p for p in under.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def documented_variables() -> set[str]:
    """Names in the first column of the tables of docs/deployment.md."""
    names = set()
    for line in DEPLOYMENT_DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            first = line.strip("|").split("|")[0]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first))
    return names


def settings_variables() -> set[str]:
    from service.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    return {(prefix + name).upper() for name in Settings.model_fields}


def project_code_mentions(name: str) -> bool:
    """Whether Python or shell code of the project names it (a Dockerfile setting it is not reading it)."""
    for folder in CODE_DIRS:
        for path in (REPO / folder).rglob("*"):
            readable = path.is_file() and path.suffix in (".py", ".sh") and "__pycache__" not in path.parts
            if readable and name in path.read_text(encoding="utf-8", errors="replace"):
                return True
    return False


# --------------------------------------------------------------------------------------------------
# 1. schema


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator_class = jsonschema.Draft201909Validator  # the schema names draft 2019-09
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    for document in (raw, load_compose()):  # as written, and with every default filled in
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, "compose.yaml does not follow the Compose Specification:\n" + "\n".join(errors)
    # the schema is strict enough to catch a typo
    broken = load_compose()
    broken["services"]["service"]["healthchek"] = broken["services"]["service"].pop("healthcheck")
    assert any("healthchek" in e.message for e in validator.iter_errors(broken))


def test_compose_layout_is_the_documented_one() -> None:
    compose = load_compose()
    services = compose["services"]
    assert set(services) == {"indexer", "service", "eval", "eval-cpu"}
    indexer, service = services["indexer"], services["service"]
    # indexer: a one-shot job writing into a named volume
    assert indexer["restart"] == "no" and indexer["command"] == ["index"]
    assert any(
        v.split(":")[:2] == ["index", "/data/index"] and not v.endswith(":ro") for v in indexer["volumes"]
    )
    # service: waits for the build, mounts the index read-only, health check on /v1/health
    assert service["depends_on"]["indexer"]["condition"] == "service_completed_successfully"
    assert "index:/data/index:ro" in service["volumes"]
    assert service["healthcheck"]["test"][0] == "CMD"
    assert service["read_only"] is True
    # eval: only with the gpu profile, reserving NVIDIA devices; eval-cpu: the same without them
    gpu, cpu = services["eval"], services["eval-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "deploy" not in cpu
    for evaluation in (gpu, cpu):
        assert evaluation["depends_on"]["service"]["condition"] == "service_healthy"
    # the GPU container is healthy only while it sees a GPU (torch in the image itself)
    test = gpu["healthcheck"]["test"]
    assert test[0] == "CMD" and "torch.cuda.is_available()" in " ".join(test)
    assert "healthcheck" not in cpu
    assert {k: v for k, v in gpu.items() if k not in ("profiles", "deploy", "healthcheck")} == {
        k: v for k, v in cpu.items() if k != "profiles"
    }
    # only the evaluation needs a profile: `docker compose up` on a CPU box starts indexer and service
    assert sorted(name for name, s in services.items() if "profiles" in s) == ["eval", "eval-cpu"]
    for name, svc in services.items():
        env = svc.get("environment", {})
        assert env.get("NUMBA_CACHE_DIR") == "/var/cache/taskgram/numba", name
        assert "numba-cache:/var/cache/taskgram/numba" in svc["volumes"], name
        assert "TASKGRAM_THREADS" in env, name


# --------------------------------------------------------------------------------------------------
# 2. everything named exists


def test_paths_volumes_and_images_exist() -> None:
    compose = load_compose()
    named_volumes = set(compose.get("volumes") or {})
    images_built = {}
    for name, svc in compose["services"].items():
        if "build" in svc:
            context = REPO / svc["build"]["context"]
            dockerfile = context / svc["build"]["dockerfile"]
            assert context.is_dir(), f"{name}: build context {context} missing"
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            images_built[svc["image"]] = dockerfile
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: bind-mount source {source} is not in the project"
            else:
                assert source in named_volumes, f"{name}: volume {source} is not declared"
    used = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])}
    assert named_volumes <= used, f"declared but unused volumes: {named_volumes - used}"
    for name, svc in compose["services"].items():
        # every image is built here (never pulled), and one tag always comes from one Dockerfile
        assert "build" in svc, f"{name}: image {svc['image']} would be pulled from a registry"
        dockerfile = REPO / svc["build"]["context"] / svc["build"]["dockerfile"]
        assert images_built[svc["image"]] == dockerfile, f"{name}: {svc['image']} built from two Dockerfiles"


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile", "docker/Dockerfile.eval"])
def test_dockerfile_copies_what_exists_and_the_context_sends_it(dockerfile: str) -> None:
    path = REPO / dockerfile
    parsed = parse_dockerfile(path)
    patterns = dockerignore_patterns(path)
    for sources in parsed.all_copies:
        for source in sources:
            target = REPO / source
            assert target.exists(), f"{dockerfile}: COPY {source}: not in the repository"
            files = [target] if target.is_file() else tracked_files(target)
            assert files, f"{dockerfile}: COPY {source}: empty"
            for file in files:
                rel = file.relative_to(REPO).as_posix()
                assert not is_ignored(rel, patterns), (
                    f"{dockerfile}: {rel} is copied but .dockerignore drops it"
                )
    # the build stage runs `pip install /src`: it needs pyproject.toml, the readme it names, every package
    # that setuptools finds and their package data
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    copied = {src.rstrip("/") for srcs in parsed.all_copies for src in srcs}
    assert "pyproject.toml" in copied, f"{dockerfile}: pyproject.toml is not copied"
    assert pyproject["project"]["readme"] in copied, f"{dockerfile}: the readme pip needs is not copied"
    setuptools = pyproject["tool"]["setuptools"]
    packages = {
        d.name
        for d in REPO.iterdir()
        if (d / "__init__.py").is_file()
        and any(fnmatchcase(d.name, p) for p in setuptools["packages"]["find"]["include"])
    }
    assert packages and packages <= copied, f"{dockerfile}: packages not copied: {sorted(packages - copied)}"
    for package, globs in setuptools.get("package-data", {}).items():
        for pattern in globs:
            assert list((REPO / package).glob(pattern)), f"package data {package}/{pattern} is missing"
    # what is not copied is not sent
    for heavy in (".venv/bin/python", ".git/HEAD", "indexes/sample/manifest.json", "tests/conftest.py"):
        assert is_ignored(heavy, patterns), f"{dockerfile}: the build context would include {heavy}"
    assert parsed.entrypoint, f"{dockerfile}: no ENTRYPOINT"
    script = parsed.entrypoint[0]
    sources = [src for srcs, dest in parsed.copies if dest == script for src in srcs]
    assert sources, f"{dockerfile}: ENTRYPOINT {script} is not copied into the image"
    assert os.access(REPO / sources[0], os.X_OK), f"{sources[0]} is not executable"
    assert parsed.user and parsed.user != "root", f"{dockerfile}: the image must not run as root"
    assert parsed.env.get("NUMBA_CACHE_DIR") == "/var/cache/taskgram/numba"


def test_ports_agree() -> None:
    compose = load_compose()
    service = compose["services"]["service"]
    image = parse_dockerfile(REPO / "docker" / "Dockerfile")
    container_ports = {int(p.rsplit(":", 1)[1]) for p in service["ports"]}
    assert container_ports == {int(service["environment"]["TASKGRAM_PORT"])} == set(image.expose)
    assert image.env["TASKGRAM_PORT"] == service["environment"]["TASKGRAM_PORT"]
    published = service["ports"][0].rsplit(":", 1)[0]
    assert published.startswith("127.0.0.1:"), "the service is published on loopback unless configured"
    assert compose["services"]["eval"]["environment"]["TASKGRAM_SERVICE_URL"] == (
        f"http://service:{service['environment']['TASKGRAM_PORT']}"
    )


def test_every_variable_has_a_default_is_used_and_is_documented() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    documented = documented_variables()
    interpolated: set[str] = set()
    for s in walk_strings(yaml.safe_load(text)):
        for m in _VARIABLE.finditer(s):
            name = m.group("braced") or m.group("plain")
            if name:
                interpolated.add(name)
                assert m.group("op") in (":-", "-"), f"compose.yaml: ${{{name}}} has no default"
    compose = load_compose()
    in_containers = {key for svc in compose["services"].values() for key in svc.get("environment", {})}
    in_images = {key for f in ("Dockerfile", "Dockerfile.eval")
                 for key in parse_dockerfile(REPO / "docker" / f).env if key != "PATH"}  # fmt: skip
    settings = settings_variables()
    undocumented = (interpolated | in_containers | in_images | settings) - documented
    assert not undocumented, f"docs/deployment.md does not document: {sorted(undocumented)}"
    for name in sorted(v for v in in_containers | in_images if v.startswith("TASKGRAM_")):
        assert name in settings or project_code_mentions(name), f"{name} is set but nothing reads it"


# --------------------------------------------------------------------------------------------------
# 3. the containers' commands, outside Docker


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Container:
    """A compose service turned into a local command: its image's entry point and environment, its
    command, its health check, with every container path mapped to a folder here."""

    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None


def as_local(name: str, compose: dict[str, Any], scratch: Path, port: int) -> Container:
    svc = compose["services"][name]
    image_dockerfile = next(
        REPO / s["build"]["context"] / s["build"]["dockerfile"]
        for s in compose["services"].values()
        if s.get("image") == svc["image"] and "build" in s
    )
    image = parse_dockerfile(image_dockerfile)
    mapping: dict[str, str] = {}
    for sources, dest in image.copies:  # files the image copies from the repository
        if len(sources) == 1:
            mapping[dest] = str(REPO / sources[0])
    for volume in svc.get("volumes", []):
        source, target = volume.split(":")[:2]
        local = REPO / source if source.startswith((".", "/")) else scratch / "volumes" / source
        local.mkdir(parents=True, exist_ok=True)
        mapping[target] = str(local)
    for tmpfs in svc.get("tmpfs", []):
        mapping[tmpfs] = str(scratch / "tmpfs")
    mapping["/opt/venv/bin"] = str(Path(sys.executable).parent)  # the image's virtual environment
    pattern = re.compile(
        r"(?<![\w.-])("
        + "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True))
        + r")(?=/|$|[\"':])"
    )

    def local(text: str) -> str:
        return pattern.sub(lambda m: mapping[m.group(1)], text)

    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGRAM_")}
    env.update({k: local(v) for k, v in image.env.items()})
    env.update({k: local(str(v)) for k, v in svc.get("environment", {}).items()})
    env["TASKGRAM_HOST"] = "127.0.0.1"  # loopback only on this machine
    env["TASKGRAM_PORT"] = str(port)
    command = svc.get("command", image.cmd)
    argv = [local(a) for a in [*image.entrypoint, *command]]
    test = svc.get("healthcheck", {}).get("test")
    healthcheck = [local(a) for a in test[1:]] if test else None
    return Container(argv, env, healthcheck)


@pytest.mark.slow
def test_indexer_then_service_run_as_the_containers_do(tmp_path: Path) -> None:
    from taskgram.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for needed in ("build", "verify", "serve"):
        assert needed in commands, f"`taskgram {needed}` is not registered"
    httpx = pytest.importorskip("httpx")

    port = _free_port()
    compose = load_compose()
    indexer = as_local("indexer", compose, tmp_path, port)
    assert shutil.which("taskgram", path=indexer.env["PATH"]), "install the project first (make setup)"
    t0 = time.monotonic()
    built = subprocess.run(indexer.argv, env=indexer.env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, f"indexer failed:\n{built.stdout}\n{built.stderr}"
    print(f"indexer: {time.monotonic() - t0:.1f} s")
    index_dir = Path(indexer.env["TASKGRAM_BUILD_OUTPUT"])
    assert index_dir.is_relative_to(tmp_path) and (index_dir / "manifest.json").is_file()
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["n_docs"] == 350

    again = subprocess.run(indexer.argv, env=indexer.env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to build" in again.stderr  # the one-shot job is idempotent

    # as with `TASKGRAM_API_KEYS=[...]` in the .env file next to compose.yaml
    api_key = "integration-test-key-0123456789"
    service = as_local("service", load_compose({"TASKGRAM_API_KEYS": json.dumps([api_key])}), tmp_path, port)
    assert json.loads(service.env["TASKGRAM_INDEXES"]) == {"sample": str(index_dir)}
    assert service.healthcheck is not None
    log_path = tmp_path / "service.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(service.argv, env=service.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    t0 = time.monotonic()
    try:
        deadline = t0 + 240
        while True:
            check = subprocess.run(
                service.healthcheck, env=service.env, capture_output=True, text=True, timeout=30
            )
            if check.returncode == 0:
                break
            assert proc.poll() is None, f"service exited with {proc.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"never healthy: {check.stderr}\n{log_path.read_text()}"
            time.sleep(0.5)
        assert "ok" in check.stdout
        print(f"service: healthy after {time.monotonic() - t0:.1f} s")

        base = f"http://127.0.0.1:{port}"
        health = httpx.get(f"{base}/v1/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "ok" and health.json()["indexes"] == ["sample"]
        request_id = health.headers["x-request-id"]
        auth = {"authorization": f"Bearer {api_key}"}
        query = {"index": "sample", "queries": ["suffix array", "the"]}
        assert httpx.post(f"{base}/v1/count", json=query, timeout=30).status_code == 401
        counted = httpx.post(f"{base}/v1/count", json=query, headers=auth, timeout=30)
        assert counted.status_code == 200 and len(counted.json()["results"]) == 2
        from prometheus_client.parser import text_string_to_metric_families

        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
        scraped = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(
                httpx.get(f"{base}/metrics", headers=auth, timeout=10).text
            )
            for sample in family.samples
        }
        assert scraped[("taskgram_queries_total", frozenset({("endpoint", "/v1/count")}))] == 2
        assert scraped[("taskgram_index_tokens", frozenset({("index", "sample")}))] == manifest["n_tokens"]
        health_200 = frozenset({("method", "GET"), ("endpoint", "/v1/health"), ("status", "200")})
        assert scraped[("taskgram_http_requests_total", health_200)] >= 2  # health checks included
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # uvicorn shuts down gracefully on SIGTERM, then exits by that signal (in Docker: status 143)
    log_text = log_path.read_text()
    assert proc.returncode in (0, -signal.SIGTERM), f"service stopped with {proc.returncode}:\n{log_text}"
    assert "Application shutdown complete" in log_text
    assert api_key not in log_text, "the API key reached the logs"
    numba_cache = Path(service.env["NUMBA_CACHE_DIR"])
    assert numba_cache.is_relative_to(tmp_path) and any(numba_cache.rglob("*.nbi")), "numba cache unused"
    records = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("request_id") == request_id and r.get("path") == "/v1/health"]
    assert len(access) == 1 and access[0]["status"] == 200, log_path.read_text()


@pytest.mark.parametrize("name", ["eval", "eval-cpu"])
def test_eval_container_command_is_one_taskgram_eval_accepts(name: str, tmp_path: Path) -> None:
    """The evaluation containers' entry point, with their environment, assembles a ``taskgram eval``
    command line that the real parser accepts (a stand-in ``taskgram`` records it: running the
    evaluation itself needs torch and a model)."""
    from taskgram.cli import build_parser

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    recorded = tmp_path / "argv.json"
    fake = fake_bin / "taskgram"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(recorded)!r}, 'w', encoding='utf-8').write(json.dumps(sys.argv[1:]))\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    container = as_local(name, load_compose(), tmp_path, _free_port())
    env = dict(container.env, PATH=f"{fake_bin}{os.pathsep}{container.env['PATH']}")
    subprocess.run(container.argv, env=env, check=True, timeout=60)
    argv = json.loads(recorded.read_text(encoding="utf-8"))
    args = build_parser().parse_args(argv)
    assert args.command == "eval"
    assert args.server == "http://service:8000" and args.index is None
    assert Path(args.tasks_dir) == REPO / "data"
    assert Path(args.run_dir) == tmp_path / "volumes" / "results" / "run"
    assert args.models == ["smollm2"]
