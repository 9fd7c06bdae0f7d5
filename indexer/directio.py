"""Large sequential file I/O past the page cache (``O_DIRECT``), for data read or written once.

Why: a build reads each input range once and never reads its shard files back. Through the page cache,
every such GB first needs a GB of page-cache memory; on machines whose memory is slow to hand out (virtual
machines that fault guest memory in on first use) that cost 2-10 s per GB, against ~1.6 s per GB written
directly with the sha256 included, and ~0.5 s per GB read (``bench/README.md``, fifth series).

Both functions return None where the platform or the file system refuses ``O_DIRECT`` (tmpfs, for one);
the caller then uses ordinary I/O. Data moves through page-aligned buffers, in whole blocks of ``ALIGN``
bytes; the unaligned tail of a written file goes through the page cache.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from indexer import memory

ALIGN = 4096  # a multiple of every common logical block size
CHUNK_BYTES = 16 << 20  # bytes per write call
_DIRECT = getattr(os, "O_DIRECT", 0)


def aligned_empty(n_bytes: int) -> np.ndarray:
    """An uninitialized uint8 array of ``n_bytes`` whose first byte is ``ALIGN``-aligned: a map of its own
    (``indexer.memory``) starts on a page, and every page size is a multiple of ``ALIGN``."""
    return memory.empty(n_bytes, np.uint8)


def _open(path: Path, flags: int) -> int | None:
    if not _DIRECT:
        return None
    try:
        return os.open(path, flags | os.O_CLOEXEC | _DIRECT, 0o644)
    except OSError as err:
        if err.errno == errno.EINVAL:
            return None
        raise


def read(path: Path, offset: int, n_bytes: int) -> np.ndarray | None:
    """Bytes ``[offset, offset + n_bytes)`` of ``path`` as a fresh uint8 array (shorter where the file
    ends first), or None where O_DIRECT is refused."""
    first = offset - offset % ALIGN
    last = -(-(offset + n_bytes) // ALIGN) * ALIGN
    fd = _open(path, os.O_RDONLY)
    if fd is None:
        return None
    try:
        buf = aligned_empty(last - first)
        got = 0
        while got < len(buf):
            try:
                n = os.preadv(fd, [buf[got:].data], first + got)
            except OSError as err:
                if err.errno == errno.EINVAL and got == 0:  # refused at the first read
                    return None
                raise
            if n == 0:
                break
            got += n
            if got % ALIGN:  # only the end of the file leaves a partial block
                break
    finally:
        os.close(fd)
    skip = offset - first
    return buf[skip : max(skip, min(got, skip + n_bytes))]


def write(path: Path, data: np.ndarray, progress: Callable[[int], None] | None, *, fsync: bool) -> str | None:
    """Write ``data`` (uint8) to ``path`` (created or truncated), fsync it if asked, and return its
    sha256 (hex); None where O_DIRECT is refused (nothing was written then but an empty file)."""
    fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    if fd is None:
        return None
    digest = hashlib.sha256()
    # Each block is hashed on a thread while it is written: both release the GIL, and hashing takes
    # about as long as the write (sha256 ~1.2 GB/s on the machine of bench/README.md).
    hasher = ThreadPoolExecutor(1, thread_name_prefix="sha256")
    try:
        aligned = len(data) - len(data) % ALIGN
        # Data that starts on a block (a build's arrays do: indexer.memory maps them) is written as it
        # is; other data is copied block by block into an aligned buffer first.
        staging = None if data.ctypes.data % ALIGN == 0 else aligned_empty(min(CHUNK_BYTES, aligned))
        for start in range(0, aligned, CHUNK_BYTES):
            part = data[start : min(start + CHUNK_BYTES, aligned)]
            if staging is not None:
                staging[: len(part)] = part
            hashed = hasher.submit(digest.update, part.data)
            try:
                _write_all(fd, (part if staging is None else staging[: len(part)]).data)
            except OSError as err:
                hashed.result()
                if err.errno == errno.EINVAL and start == 0:  # refused at the first write
                    return None
                raise
            hashed.result()
            if progress is not None:
                progress(len(part))
        if aligned < len(data):
            _clear_direct(fd)
            tail = data[aligned:]
            _write_all(fd, tail.data)
            digest.update(tail.data)
            if progress is not None:
                progress(len(tail))
        if fsync:
            os.fsync(fd)
    finally:
        hasher.shutdown()
        os.close(fd)
    return digest.hexdigest()


def _write_all(fd: int, buf: memoryview) -> None:
    done = os.write(fd, buf)
    if done < len(buf):  # short (rare): finish through the page cache, which takes any length
        _clear_direct(fd)
        while done < len(buf):
            done += os.write(fd, buf[done:])


def _clear_direct(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_DIRECT)
