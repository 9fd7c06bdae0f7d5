#!/bin/sh
# Entry point of the taskgram images. The same script runs outside Docker (tests/integration/
# test_compose.py runs it with the environment compose.yaml gives each container).
#
#   entrypoint.sh index [ARGS]   build TASKGRAM_BUILD_INPUT into TASKGRAM_BUILD_OUTPUT (one-shot; does
#                                nothing but say so when a complete index is already there), then verify
#   entrypoint.sh serve [ARGS]   taskgram serve the indexes of TASKGRAM_INDEXES on TASKGRAM_HOST:TASKGRAM_PORT
#                                (127.0.0.1:8000 unless set; the image sets TASKGRAM_HOST=0.0.0.0)
#   entrypoint.sh healthcheck    exit 0 when GET /v1/health on TASKGRAM_PORT answers 200 with status ok
#   entrypoint.sh eval [ARGS]    taskgram eval against TASKGRAM_SERVICE_URL (options from TASKGRAM_EVAL_*), ARGS
#   entrypoint.sh COMMAND...     any other command (taskgram --help, python, sh, ...)
#
# Thread counts: TASKGRAM_THREADS (default: the CPUs this process may run on, as nproc counts them) sets
# NUMBA_NUM_THREADS, OMP_NUM_THREADS and RAYON_NUM_THREADS unless they are set already.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

threads=${TASKGRAM_THREADS:-auto}
if [ "$threads" = auto ]; then
    threads=$(nproc 2>/dev/null || echo 1)
fi
case "$threads" in
    ''|*[!0-9]*|0) echo "entrypoint: TASKGRAM_THREADS must be a positive integer or 'auto', got '$threads'" >&2
                   exit 2 ;;
esac
export NUMBA_NUM_THREADS="${NUMBA_NUM_THREADS:-$threads}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$threads}"

if [ -n "${NUMBA_CACHE_DIR:-}" ]; then
    mkdir -p "$NUMBA_CACHE_DIR"
fi

cmd=${1:-serve}
[ "$#" -gt 0 ] && shift

case "$cmd" in
    index)
        : "${TASKGRAM_BUILD_INPUT:?entrypoint: set TASKGRAM_BUILD_INPUT to the corpus files, directories or globs}"
        : "${TASKGRAM_BUILD_OUTPUT:?entrypoint: set TASKGRAM_BUILD_OUTPUT to the index directory to build}"
        out=$TASKGRAM_BUILD_OUTPUT
        if [ -f "$out/manifest.json" ]; then
            echo "entrypoint: $out already holds a complete index; nothing to build" \
                 "(remove the volume or change TASKGRAM_INDEX_NAME to build another)" >&2
            exit 0
        fi
        # The caller's own arguments (e.g. --normalization lower) go after the ones built here.
        extra=$#
        set -- "$@" build
        # TASKGRAM_BUILD_INPUT is a space-separated list; globs in it are expanded here or by the builder.
        for input in $TASKGRAM_BUILD_INPUT; do
            set -- "$@" "$input"
        done
        set -- "$@" --output "$out" --memory "${TASKGRAM_BUILD_MEMORY:-8G}"
        if [ -n "${TASKGRAM_BUILD_NORMALIZATION:-}" ]; then
            set -- "$@" --normalization "$TASKGRAM_BUILD_NORMALIZATION"
        fi
        if [ -n "${TASKGRAM_BUILD_TOKENIZER:-}" ]; then
            set -- "$@" --tokenizer "$TASKGRAM_BUILD_TOKENIZER"
        fi
        while [ "$extra" -gt 0 ]; do
            set -- "$@" "$1"
            shift
            extra=$((extra - 1))
        done
        taskgram "$@"
        if [ "${TASKGRAM_BUILD_VERIFY:-1}" = 1 ]; then
            taskgram verify "$out"
        fi
        ;;
    serve)
        : "${TASKGRAM_INDEXES:?entrypoint: set TASKGRAM_INDEXES to a JSON object of index names and directories}"
        exec taskgram serve --host "${TASKGRAM_HOST:-127.0.0.1}" --port "${TASKGRAM_PORT:-8000}" "$@"
        ;;
    healthcheck)
        exec python "$here/healthcheck.py" "$@"
        ;;
    eval)
        # Options from TASKGRAM_SERVICE_URL, TASKGRAM_EVAL_TASKS_DIR, TASKGRAM_EVAL_RUN_DIR and
        # TASKGRAM_EVAL_MODELS (space-separated) when set; the caller's own arguments go after them.
        extra=$#
        set -- "$@" eval
        if [ -n "${TASKGRAM_SERVICE_URL:-}" ]; then
            set -- "$@" --server "$TASKGRAM_SERVICE_URL"
        fi
        if [ -n "${TASKGRAM_EVAL_TASKS_DIR:-}" ]; then
            set -- "$@" --tasks-dir "$TASKGRAM_EVAL_TASKS_DIR"
        fi
        if [ -n "${TASKGRAM_EVAL_RUN_DIR:-}" ]; then
            set -- "$@" --run-dir "$TASKGRAM_EVAL_RUN_DIR"
        fi
        if [ -n "${TASKGRAM_EVAL_MODELS:-}" ]; then
            set -- "$@" --models
            for model in $TASKGRAM_EVAL_MODELS; do
                set -- "$@" "$model"
            done
        fi
        while [ "$extra" -gt 0 ]; do
            set -- "$@" "$1"
            shift
            extra=$((extra - 1))
        done
        exec taskgram "$@"
        ;;
    *)
        exec "$cmd" "$@"
        ;;
esac
