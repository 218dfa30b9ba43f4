"""The blob archive: compressed copies of the audio blobs, shared by every backup.

Blobs are content-addressed (named by the sha256 of their plain content), so one copy serves
every backup that references it and a run copies only the blobs the archive does not hold yet:
a second run over unchanged audio copies nothing. A blob lives at
``backup_dir/blobs/<first two hex digits>/<sha256>.zst``; it is written to a temp file in
``blobs/tmp/``, fsynced, renamed into place and its directory fsynced, so a path either holds a
complete compressed blob or does not exist. The archive never decides what to delete: retention
calls :meth:`BlobArchive.delete` for blobs no remaining manifest references.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Final

from backup import partials
from backup.errors import BackupError, BlobSourceError
from backup.files import fsync_dir, make_private_dir, open_private
from backup.stream import Progress, StreamResult, compress_stream, decompress_stream

logger = logging.getLogger(__name__)

_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_SUFFIX: Final = ".zst"


class BlobArchive:
    """The compressed, content-addressed copies of audio blobs under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise BackupError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{_SUFFIX}"

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def iter_blobs(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for fan in sorted(self.root.iterdir()):
            if len(fan.name) != 2 or not fan.is_dir():
                continue
            for entry in fan.iterdir():
                name = entry.name.removesuffix(_SUFFIX)
                if entry.name.endswith(_SUFFIX) and _SHA256.fullmatch(name):
                    yield name

    def list_blobs(self) -> set[str]:
        """Every blob the archive holds."""
        return set(self.iter_blobs())

    def delete(self, sha256: str) -> bool:
        """Remove one blob; False when it was not there."""
        path = self.path_for(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True

    def add(
        self,
        sha256: str,
        sources: Sequence[Path],
        *,
        level: int,
        progress: Progress | None = None,
    ) -> StreamResult | None:
        """Copy one blob in unless the archive holds it; None when nothing was copied.

        ``sources`` are the places the blob may be, tried in order (the application may move
        it from the first to a later one meanwhile: see :class:`backup.source.BackupSource`).
        The plain content is hashed on the way through: a source file whose content does not
        match its name is refused rather than archived under the wrong hash.
        """
        target = self.path_for(sha256)
        if target.is_file():
            return None
        make_private_dir(self.tmp)
        make_private_dir(target.parent)
        tmp = self.tmp / f"{sha256}.{os.getpid()}.part"
        source = sources[0]
        try:
            with _open_first(sources) as src:
                fd = open_private(tmp, exclusive=False)
                try:
                    result = compress_stream(src, fd, level=level, progress=progress)
                finally:
                    os.close(fd)
            if result.plain_sha256 != sha256:
                raise BlobSourceError(
                    f"audio blob {source} does not match its name (content sha256 "
                    f"{result.plain_sha256}); the application's storage is damaged"
                )
            os.replace(tmp, target)
        except FileNotFoundError as exc:
            tmp.unlink(missing_ok=True)
            raise BlobSourceError(
                f"audio blob {sha256} is referenced by the database but missing "
                f"from {source.parent}"
            ) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(target.parent)
        return result

    def check(self, sha256: str, progress: Progress | None = None) -> StreamResult:
        """Decompress one blob and hash it (raises OSError or zstandard.ZstdError)."""
        with self.path_for(sha256).open("rb") as src:
            return decompress_stream(src, progress=progress)

    def restore_to(self, sha256: str, target: Path, progress: Progress | None = None) -> str:
        """Write the plain content of one blob to ``target`` atomically; its actual sha256.

        The content is written under a temp name beside it (:mod:`backup.partials`: what a
        dead restore left there is removed first) and renamed to ``target`` only when it hashes
        to ``sha256``; otherwise ``target`` is left as it was and the actual sha256 returned.
        """
        make_private_dir(target.parent)
        partials.remove_dead(target)
        tmp, fd = partials.claim(target)
        try:
            with os.fdopen(fd, "wb") as out, self.path_for(sha256).open("rb") as src:
                result = decompress_stream(src, out.write, progress=progress)
                out.flush()
                os.fsync(out.fileno())
            if result.plain_sha256 != sha256:
                tmp.unlink()
                return result.plain_sha256
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(target.parent)
        return result.plain_sha256

    def sweep_temp(self) -> int:
        """Remove temp files left by interrupted runs (call only while holding the run lock)."""
        if not self.tmp.is_dir():
            return 0
        count = sum(1 for _ in self.tmp.iterdir())
        shutil.rmtree(self.tmp, ignore_errors=True)
        return count


def _open_first(paths: Sequence[Path]) -> BinaryIO:
    """The first of ``paths`` that opens; FileNotFoundError when none exists."""
    for path in paths[:-1]:
        try:
            return path.open("rb")
        except FileNotFoundError:
            continue
    return paths[-1].open("rb")
