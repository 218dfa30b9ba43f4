"""One streaming pass: read, hash the plain bytes, compress with zstd, hash and write the result.

The shell equivalent is ``zstd X && sha256sum X.zst``: two passes over the data. Here every
chunk is hashed and compressed while it is in memory, and the compressed chunk is hashed on its
way to the file, so each byte is read once. :func:`decompress_stream` is the reverse, used by
verify and restore, hashing both sides in the same way.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Final

import zstandard

CHUNK: Final = 1024 * 1024

Progress = Callable[[int], None]


@dataclass(frozen=True)
class StreamResult:
    """Hashes and sizes of both sides of a (de)compression."""

    plain_sha256: str
    plain_bytes: int
    stored_sha256: str
    stored_bytes: int


class _HashingWriter:
    """The file-like sink zstandard writes compressed chunks into: hash, count, write."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.hash = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        """zstandard calls this; the data is already handed to the kernel."""


def compress_stream(
    source: BinaryIO,
    fd: int,
    *,
    level: int,
    threads: int = 0,
    hash_plain: bool = True,
    sync: bool = True,
    progress: Progress | None = None,
) -> StreamResult:
    """Compress ``source`` into the open file ``fd``, hashing both sides; fsync before returning.

    ``threads`` as zstd takes it (0: compress on this thread; -1: one worker per core, this
    thread then only reads and hashes). ``hash_plain=False`` skips the plain side's hash
    (``plain_sha256`` is then empty) where nobody needs it; ``sync=False`` leaves the fsync to
    the caller.
    """
    plain = hashlib.sha256()
    plain_bytes = 0
    sink = _HashingWriter(fd)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads, write_checksum=True
    )
    compressor = zstandard.ZstdCompressor(compression_params=params)
    with compressor.stream_writer(sink, write_size=CHUNK, closefd=False) as writer:
        while chunk := source.read(CHUNK):
            if hash_plain:
                plain.update(chunk)
            plain_bytes += len(chunk)
            writer.write(chunk)
            if progress is not None:
                progress(len(chunk))
    if sync:
        os.fsync(fd)
    plain_sha256 = plain.hexdigest() if hash_plain else ""
    return StreamResult(plain_sha256, plain_bytes, sink.hash.hexdigest(), sink.count)


class _HashingReader:
    """The compressed side of a decompression: hash and count what zstandard reads."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.hash.update(data)
        self.count += len(data)
        return data


def decompress_stream(
    source: BinaryIO,
    sink: Callable[[bytes], object] | None = None,
    *,
    progress: Progress | None = None,
) -> StreamResult:
    """Decompress ``source`` into ``sink`` (or nowhere), hashing both sides.

    Raises :class:`zstandard.ZstdError` on a damaged frame (the frames carry a checksum). The
    whole compressed file is hashed even when decompression stops early, so the caller can
    report the stored file's actual sha256.
    """
    reader = _HashingReader(source)
    plain = hashlib.sha256()
    plain_bytes = 0
    decompressor = zstandard.ZstdDecompressor()
    try:
        with decompressor.stream_reader(reader, read_size=CHUNK, read_across_frames=True) as zr:
            while chunk := zr.read(CHUNK):
                plain.update(chunk)
                plain_bytes += len(chunk)
                if sink is not None:
                    sink(chunk)
                if progress is not None:
                    progress(len(chunk))
    except zstandard.ZstdError:
        while reader.read(CHUNK):
            pass
        raise
    return StreamResult(plain.hexdigest(), plain_bytes, reader.hash.hexdigest(), reader.count)


def sha256_file(source: BinaryIO, progress: Progress | None = None) -> tuple[str, int]:
    """The sha256 and size of a stream read to its end."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return digest.hexdigest(), size
