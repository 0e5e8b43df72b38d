"""Folders written atomically, and never over something finetuner did not write.

:func:`write_folder` builds the new folder beside its target (``.NAME.tmp-*``), then swaps it
in with two renames: the previous target to ``.NAME.old``, the new folder to the target. A
crash at any moment leaves a complete folder: the target, or, when it came between the two
renames, ``.NAME.old`` (which :func:`current` finds). Leftovers of a killed write are removed
by the next one. Artifacts, checkpoints and ONNX exports are all written this way.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from finetuner.errors import ArtifactError


def backup_of(target: Path) -> Path:
    """Where a write keeps the previous ``target`` between its two renames."""
    return target.with_name(f".{target.name}.old")


def current(target: Path) -> Path:
    """``target``, or the previous one when a write was killed between its two renames."""
    backup = backup_of(target)
    return backup if not _exists(target) and backup.is_dir() else target


def check_target(target: Path, *, ours: Callable[[Path], bool], what: str, overwrite: bool = False) -> None:
    """Refuse a ``target`` whose replacement would delete something of the user's.

    A target may be replaced when it is missing, an empty folder, or ``ours`` says finetuner
    wrote it (an artifact, a checkpoint, ...); anything else only with ``overwrite``. The
    current folder and its parents are never replaced, nor written below a file.
    """
    resolved = target.resolve()
    if target.name in ("", ".", "..") or resolved == Path.cwd() or resolved in Path.cwd().parents:
        raise ArtifactError(
            f"cannot write {what} to {str(target)!r}: it is the current folder or holds it; name a new folder, e.g. {target / 'model'}"
        )
    ancestor = target.parent
    while not _exists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ArtifactError(f"cannot write {what} to {target}: {ancestor} is a file, not a folder")
    if overwrite or not _exists(target) or (target.is_dir() and (ours(target) or not any(target.iterdir()))):
        return
    found = "a file" if not target.is_dir() else "a folder with other content"
    raise ArtifactError(
        f"{target} is {found}, not {what}; finetuner replaces only its own output or an empty folder. "
        f"Choose another path, move it away, or pass overwrite=True to replace it"
    )


@contextlib.contextmanager
def write_folder(target: Path) -> Iterator[Path]:
    """An empty staging folder for the caller to fill; it replaces ``target`` when the block ends without error.

    On error (disk full, a failed rename, KeyboardInterrupt) the staging folder is removed and
    the previous ``target`` is left as it was. Call :func:`check_target` first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):  # left by a write that was killed
        _remove(stale)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp's folder is private (0700); the result follows the umask
        yield staging
        _swap(staging, target)
    except BaseException as exc:
        _remove(staging)
        failure = _os_error(exc, target)
        if failure is None:
            raise
        raise failure from exc


def _os_error(exc: BaseException, target: Path) -> OSError | None:
    """A failed write (disk full, ...) as an OSError naming ``target``; None for other errors.

    safetensors reports one as a SafetensorError ("... (os error 28)"), and Python's own writes
    as an OSError without a file name.
    """
    if isinstance(exc, OSError):
        return OSError(exc.errno, exc.strerror, str(target)) if exc.errno and exc.filename is None else None
    found = re.search(r"\(os error (\d+)\)", str(exc)) if type(exc).__name__ == "SafetensorError" else None
    return OSError(int(found[1]), os.strerror(int(found[1])), str(target)) if found else None


def _swap(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; on failure the previous target is back in place."""
    backup = backup_of(target)
    if _exists(target):
        _remove(backup)  # a stale one: the write that left it got its new folder in
        os.replace(target, backup)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(backup, target)
            raise
    else:
        os.replace(new, target)
    _remove(backup)


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _remove(path: Path) -> None:
    """Delete a file, link or folder (a link's target is left alone)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
