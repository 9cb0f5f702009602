"""Output files: checked before any work, written atomically.

:func:`check_writable` runs before a solve so a bad ``-o`` fails at once, not after
minutes of work. :func:`write_text` writes to a temporary file in the target's folder and
renames it over the target (``os.replace``), so a crash, a signal, a full disk or a file-size
limit leaves either the old file or the new one, never a truncated mix.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> p = os.path.join(d, "plan.json")
>>> check_writable(p, option="-o") == p
True
>>> _ = write_text(p, "{}")
>>> open(p).read()
'{}'
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from cosma.errors import UsageError


def check_writable(path: str | os.PathLike, *, force: bool = True, option: str = "-o") -> str:
    """Refuse now, with the reason and the fix, a path that could not be written later:
    a folder, a path under a file, a missing or read-only folder, or an existing file
    without ``force``. Returns the path as a string."""
    text = os.fspath(path)
    if not text:
        raise UsageError(f"{option} needs a file name, not an empty string")
    target = Path(text)
    if target.is_dir() or text.endswith(os.sep):
        raise UsageError(f"{option} {text}: is a folder; give a file name inside it")
    if target.exists() and not force:
        raise UsageError(f"{option} {text}: already exists; pass --force to overwrite it")
    parent = target.parent
    # Walk up to the first part of the path that exists: a file there means "under a file".
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(
            f"{option} {text}: {probe} is a file, not a folder; choose a path in a folder"
        )
    if not parent.exists():
        raise UsageError(
            f"{option} {text}: the folder {parent} does not exist; create it first "
            f"(mkdir -p {parent}) or choose another path"
        )
    # The real test: create (and remove) a file next to the target, as the write will.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cosma-check-", dir=parent)
    except OSError as e:
        raise UsageError(
            f"{option} {text}: cannot write in {parent} ({e.strerror or e}); choose a "
            "writable folder"
        ) from None
    os.close(fd)
    os.unlink(tmp)
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{option} {text}: the file is read-only; choose another path")
    return text


def write_text(path: str | os.PathLike, text: str, *, option: str = "-o") -> str:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then
    ``os.replace``). On failure the target is untouched and a UsageError says why."""
    target = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(target))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cosma-", suffix=".tmp", dir=parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno == errno.ENOSPC:
            reason = "the device is full"
        elif e.errno == errno.EFBIG:
            reason = "the file would exceed the file-size limit"
        raise UsageError(
            f"{option} {target}: could not write ({reason}); the old file, if any, is "
            "unchanged. Free space or choose another path"
        ) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return target
