"""Client-side encryption of the offsite copy: the age format (pyrage), public-key recipients.

Everything :mod:`backup.remote` sends is encrypted here first, to the age public keys listed in
``VRP_BACKUP_REMOTE_RECIPIENTS_FILE`` (``age1...``, one per line, ``#`` comments allowed). The
host that makes backups needs nothing more: it cannot decrypt what it sent, so a compromised
host does not expose the older copies. Decrypting needs an identity file
(``VRP_BACKUP_REMOTE_IDENTITY_FILE``, the ``AGE-SECRET-KEY-1...`` lines ``age-keygen`` writes),
read only by the commands that read the remote back (verify, restore, list with details).

age authenticates every chunk it decrypts: a changed byte anywhere in an object makes
:func:`decrypt` fail, which verify reports against the object's name. Keys come from files
only; no message here holds a key, only the file's path and what is wrong with it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pyrage
from pyrage import x25519

from backup.errors import BackupConfigError, BackupError

RECIPIENTS_SETTING: Final = "VRP_BACKUP_REMOTE_RECIPIENTS_FILE"
IDENTITY_SETTING: Final = "VRP_BACKUP_REMOTE_IDENTITY_FILE"
_MAX_KEY_FILE: Final = 1 << 20


class DecryptionError(BackupError):
    """An object could not be decrypted: damaged or changed, or not made for this identity."""


def _key_lines(setting: str, path: Path | None, what: str) -> list[str]:
    if path is None:
        raise BackupConfigError(f"{setting} is not set; it must name the file holding {what}")
    try:
        with path.open("rb") as key_file:
            data = key_file.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise BackupConfigError(
            f"{setting}={str(path)!r}: cannot be read ({(exc.strerror or str(exc)).lower()})"
        ) from None
    if len(data) > _MAX_KEY_FILE:
        raise BackupConfigError(f"{setting}={str(path)!r}: larger than a key file can be")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise BackupConfigError(f"{setting}={str(path)!r}: not a text file of age keys") from None
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def load_recipients(path: Path | None) -> list[x25519.Recipient]:
    """The age public keys of the recipients file; BackupConfigError naming the setting."""
    lines = _key_lines(RECIPIENTS_SETTING, path, "age public keys (age1..., one per line)")
    recipients = []
    for number, line in enumerate(lines, 1):
        try:
            recipients.append(x25519.Recipient.from_str(line))
        except pyrage.RecipientError:
            hint = " (a private key: keep it off this host)" if _is_identity(line) else ""
            raise BackupConfigError(
                f"{RECIPIENTS_SETTING}={str(path)!r}: key {number} is not an age public key{hint}"
            ) from None
    if not recipients:
        raise BackupConfigError(f"{RECIPIENTS_SETTING}={str(path)!r}: holds no age public key")
    return recipients


def load_identities(path: Path | None) -> list[x25519.Identity]:
    """The age private keys of the identity file; BackupConfigError naming the setting."""
    lines = _key_lines(IDENTITY_SETTING, path, "the age private key (AGE-SECRET-KEY-1...)")
    identities = []
    for number, line in enumerate(lines, 1):
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise BackupConfigError(
                f"{IDENTITY_SETTING}={str(path)!r}: line {number} is not an age private key"
            ) from None
    if not identities:
        raise BackupConfigError(f"{IDENTITY_SETTING}={str(path)!r}: holds no age private key")
    return identities


def _is_identity(line: str) -> bool:
    return line.upper().startswith("AGE-SECRET-KEY-")


def encrypt(data: bytes, recipients: Sequence[x25519.Recipient]) -> bytes:
    """``data`` as one age file readable by any of ``recipients``."""
    return pyrage.encrypt(data, list(recipients))


def decrypt(data: bytes, identities: Sequence[x25519.Identity], name: str) -> bytes:
    """The plain content of the age file ``data`` (the object ``name``, for the message)."""
    try:
        return pyrage.decrypt(data, list(identities))
    except pyrage.DecryptError as exc:
        reason = str(exc).rstrip(".") or "decryption failed"
        raise DecryptionError(
            f"{name}: cannot be decrypted ({reason}); the object was changed or damaged, or the "
            f"identity file is not the key this remote was made for"
        ) from None


def write_key_pair(identity_file: Path) -> str:
    """Write a new identity (0600) to ``identity_file`` and its public key to
    ``identity_file.pub``, as ``age-keygen`` does; the public key. FileExistsError if either
    exists."""
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    created = datetime.now(UTC).isoformat(timespec="seconds")
    secret = f"# created: {created}\n# public key: {public}\n{identity}\n".encode("ascii")
    public_file = identity_file.with_name(identity_file.name + ".pub")
    if public_file.exists():
        raise FileExistsError(errno.EEXIST, "exists", str(public_file))
    fd = os.open(identity_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    public_file.write_text(f"# created: {created}\n{public}\n", encoding="ascii")
    return public
