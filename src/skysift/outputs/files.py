"""Atomic file writing: every output goes to a temporary file, then is renamed."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from astropy.table import Table

from skysift.errors import InputError

__all__ = ["atomic_path", "write_table", "write_json", "ensure_out_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    If the body raises, the temporary file is removed and ``path`` is left as
    it was, so nothing already written is lost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode of a normal new file
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_table(table: Table, path: str | os.PathLike[str]) -> Path:
    """Write an astropy table as ECSV, atomically."""
    return write_with(path, lambda tmp: table.write(tmp, format="ascii.ecsv", overwrite=True))


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write a JSON document (indented, UTF-8), atomically."""

    def _w(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")

    return write_with(path, _w)


def ensure_out_dir(out: str | os.PathLike[str] | None, stem: str) -> Path:
    """Return the output folder, created and checked writable before any computation.

    Parameters
    ----------
    out : path, optional
        The folder; default ``./skysift-out/<stem>/``.
    stem : str
        Name of the default folder.

    Raises
    ------
    InputError
        If the folder cannot be created (a file is in the way, a parent is a
        file, no permission) or is not writable.
    """
    path = Path(out) if out is not None else Path.cwd() / "skysift-out" / stem
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        msg = f"--out {path}: a file of that name is in the way (give a folder)"
        raise InputError(msg) from None
    except OSError as err:
        msg = f"--out {path}: cannot create the output folder ({err.strerror or err})"
        raise InputError(msg) from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".skysift-write-test-"):
            pass
    except OSError as err:
        msg = f"--out {path}: the output folder is not writable ({err.strerror or err})"
        raise InputError(msg) from None
    return path
