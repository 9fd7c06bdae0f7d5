"""Running a build's tasks (``indexer.shardwork``): in this process, in local worker processes, or on Ray.

The schedule is the same for every executor:

* text pieces are tokenized by the workers, at most ``2 × workers`` pieces ahead of the plan;
* their results are taken in input order and fed to the shard planner, so shard ``k`` is planned as
  soon as the pieces it needs are tokenized (sorting starts while later pieces are still tokenized);
* at most ``slots`` shards are read, sorted and written at once (the memory budget holds that many);
  one worker writes and hashes a shard while another sorts the next;
* on one machine, a shard's suffix array is synced to disk and the shard published by a thread of this
  process, so its worker sorts the next shard meanwhile (the disk is the slowest part of a build); on
  Ray each task publishes its own shard, since syncing shared storage must happen where it was written.

Executors only differ in where a task runs: :class:`InlineExecutor` (this process, ``--workers 1``),
:class:`ProcessExecutor` (a pool of worker processes) and ``indexer.ray_build.RayExecutor``.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from indexer.shardwork import (
    BuildSpec,
    Piece,
    PieceResult,
    ShardResult,
    ShardSpec,
    build_shard,
    init_worker,
    keep_shard_buffers,
    publish_shard,
    tokenize_piece,
)

log = logging.getLogger("taskgram.build")


class Executor(Protocol):
    shard_slots: int  # shards built at once

    def submit_piece(self, spec: BuildSpec, piece: Piece) -> Any: ...

    def submit_shard(self, spec: BuildSpec, shard: ShardSpec, sources: Any, alone: bool = False) -> Any:
        """Start building ``shard``; ``alone``: no other task of the build runs or waits meanwhile."""

    def wait_any(self, handles: list[Any]) -> None:
        """Return when at least one of ``handles`` is done."""

    def done(self, handle: Any) -> bool: ...

    def result(self, handle: Any) -> Any: ...

    def close(self, cancel: bool) -> None: ...


class _Done:
    def __init__(self, fn: Callable[[], Any]) -> None:
        try:
            self.value, self.error = fn(), None
        except Exception as err:
            self.value, self.error = None, err


class InlineExecutor:
    """Runs every task at once, in this process (one worker: no pool, no copies)."""

    shard_slots = 1

    def __init__(self) -> None:
        self._env = {k: os.environ.get(k) for k in ("TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS")}
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core: the tokenizer's own threads too
        keep_shard_buffers(True)  # the one shard slot: shard after shard in the same memory

    def submit_piece(self, spec: BuildSpec, piece: Piece) -> _Done:
        return _Done(lambda: tokenize_piece(spec, piece))

    def submit_shard(self, spec: BuildSpec, shard: ShardSpec, sources: Any, alone: bool = False) -> _Done:
        # this process sorts with all of numba's threads anyway
        return _Done(lambda: build_shard(spec, shard, sources, publish=False))

    def wait_any(self, handles: list[Any]) -> None:
        return None

    def done(self, handle: _Done) -> bool:
        return True

    def result(self, handle: _Done) -> Any:
        if handle.error is not None:
            raise handle.error
        return handle.value

    def close(self, cancel: bool) -> None:
        keep_shard_buffers(False)
        for key, value in self._env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_COUNTER: Any = None


def _init_pool_worker(counter: Any, threads: int, keep_buffers: bool) -> None:
    with counter.get_lock():
        counter.value += 1
        number = counter.value
    init_worker(f"worker {number}", threads, keep_buffers=keep_buffers)


class ProcessExecutor:
    """A pool of ``workers`` processes (forkserver: they never inherit this process's threads). When
    there are no more workers than shard slots, each worker keeps its shard buffers between shards: the
    budget holds one shard per worker anyway."""

    def __init__(self, workers: int, shard_slots: int) -> None:
        import multiprocessing

        self.shard_slots = shard_slots
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["indexer.shardwork", "indexer.kernels"])
        cores = len(os.sched_getaffinity(0))
        self.cores = cores
        counter = ctx.Value("i", 0)
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_init_pool_worker,
            initargs=(counter, max(1, cores // workers), workers <= shard_slots),
        )

    def submit_piece(self, spec: BuildSpec, piece: Piece) -> Future[Any]:
        return self.pool.submit(tokenize_piece, spec, piece)

    def submit_shard(
        self, spec: BuildSpec, shard: ShardSpec, sources: Any, alone: bool = False
    ) -> Future[Any]:
        # A shard built while the other workers are idle (the last one of a text build, typically) sorts
        # with every core's numba thread: the worker's numba started one per core (the forkserver
        # imported it), of which it normally uses its share.
        threads = self.cores if alone else None
        return self.pool.submit(build_shard, spec, shard, sources, publish=False, sort_threads=threads)

    def wait_any(self, handles: list[Any]) -> None:
        wait(handles, return_when=FIRST_COMPLETED)

    def done(self, handle: Future[Any]) -> bool:
        return handle.done()

    def result(self, handle: Future[Any]) -> Any:
        return handle.result()

    def close(self, cancel: bool) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


@dataclass
class ScheduleResult:
    pieces: list[PieceResult] = field(default_factory=list)
    shards: list[ShardResult] = field(default_factory=list)


def run_schedule(
    executor: Executor,
    spec: BuildSpec,
    *,
    workers: int,
    slots: int,
    pieces: Iterable[Piece] | None,
    plan_piece: Callable[[PieceResult], list[ShardSpec]],
    shard_plan: Iterator[ShardSpec] | None = None,
    finish_plan: Callable[[], list[ShardSpec]],
    sources: Any = None,
    on_piece: Callable[[PieceResult], None] | None = None,
    on_shard: Callable[[ShardResult], None] | None = None,
) -> ScheduleResult:
    """Run the tasks of a build: tokenize ``pieces`` (text) and feed their results, in order, to
    ``plan_piece``, which returns the shards they close; or take the shards of ``shard_plan``
    (pre-tokenized). Build every shard, at most ``slots`` at once; return the results in order."""
    out = ScheduleResult()
    piece_iter = iter(pieces) if pieces is not None else iter(())
    in_flight: deque[Any] = deque()  # piece handles, in input order
    waiting: deque[ShardSpec] = deque()  # planned shards not yet started
    running: dict[int, Any] = {}  # shard index -> handle
    publishing: dict[int, Future[ShardResult]] = {}  # shards written, being synced and published here
    finished: dict[int, ShardResult] = {}
    more_pieces = pieces is not None
    planned_all = False
    ahead = 2 * workers
    # One sync at a time: the disk serializes them anyway, and the order of shards is kept.
    publisher = ThreadPoolExecutor(1, thread_name_prefix="publish-shards")

    def start_shards() -> None:
        while waiting and len(running) < slots:
            shard = waiting.popleft()
            alone = not waiting and not running and not in_flight and not more_pieces and planned_all
            running[shard.index] = executor.submit_shard(spec, shard, sources, alone)

    def shard_done(index: int, result: ShardResult) -> None:
        finished[index] = result
        if on_shard is not None:
            on_shard(result)

    def collect_shards() -> None:
        for index, handle in list(running.items()):
            if executor.done(handle):
                result = executor.result(handle)
                del running[index]
                if result.published:
                    shard_done(index, result)
                else:  # its worker is free for the next shard while this one is synced
                    publishing[index] = publisher.submit(publish_shard, spec, result)
        for index, future in list(publishing.items()):
            if future.done():
                del publishing[index]
                shard_done(index, future.result())

    try:
        while True:
            while more_pieces and len(in_flight) < ahead:
                piece = next(piece_iter, None)
                if piece is None:
                    more_pieces = False
                    break
                in_flight.append(executor.submit_piece(spec, piece))
            if shard_plan is not None and not planned_all:
                # pre-tokenized: the plan is known up front; keep the next shards queued
                while len(waiting) < slots:
                    nxt = next(shard_plan, None)
                    if nxt is None:
                        planned_all = True
                        break
                    waiting.append(nxt)
            start_shards()
            if in_flight and executor.done(in_flight[0]):
                result = executor.result(in_flight.popleft())
                out.pieces.append(result)
                if on_piece is not None:
                    on_piece(result)
                waiting.extend(plan_piece(result))
                start_shards()
                continue
            collect_shards()
            start_shards()
            if not in_flight and not more_pieces and (shard_plan is None or planned_all):
                if not planned_all and shard_plan is None:
                    waiting.extend(finish_plan())
                    planned_all = True
                    start_shards()
                if not running and not waiting and not publishing:
                    break
            handles = ([in_flight[0]] if in_flight else []) + list(running.values())
            if handles:
                executor.wait_any(handles)
            elif publishing:
                wait(list(publishing.values()), return_when=FIRST_COMPLETED)
    except BaseException:
        publisher.shutdown(wait=True)  # shards already written are published: a rerun keeps them
        executor.close(cancel=True)
        raise
    publisher.shutdown(wait=True)
    executor.close(cancel=False)
    out.shards = [finished[i] for i in sorted(finished)]
    return out
