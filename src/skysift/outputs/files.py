"""Atomic file writing: every output goes to a temporary file, then is renamed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from astropy.table import Table

from skysift.errors import InputError

__all__ = [
    "output_stem",
    "output_stems",
    "sha256_file",
    "atomic_path",
    "write_table",
    "write_json",
    "ensure_out_dir",
    "prepared_out_dir",
    "clean_stale_temps",
]

#: Temporary files of :func:`atomic_path`: ``.NAME.HOST-PID-RANDOM.tmpSUFFIX``
#: (HOST: 6 hexadecimal digits of the host name's SHA-256), and the older
#: ``.NAME.RANDOM.tmpSUFFIX`` (RANDOM: mkstemp's 8 characters).
_TEMP = re.compile(r"^\..+\.(?:(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp(?:\.[^.]*)?$")
#: Age after which a temporary file of an unknown writer (another host, an older
#: skysift) is taken as abandoned, in seconds.
_ABANDONED_S = {"other_host": 24 * 3600.0, "unknown": 3600.0}


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def _alive(pid: int) -> bool:
    """Is process ``pid`` running on this computer? (POSIX; elsewhere assumed so.)"""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def clean_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed runs left in ``folder``.

    :func:`atomic_path` removes its temporary file when its body fails; only a
    run killed outright (SIGKILL, out of memory, power loss) leaves one, as a
    hidden ``.NAME.*.tmpSUFFIX``. A temporary file is removed when the process
    that wrote it no longer runs on this computer, or, when its writer is not
    known (another computer sharing the folder, an older skysift), when it has
    not changed for 24 hours (1 hour for an older skysift's). Files of running
    writers and every other file are left alone.

    Parameters
    ----------
    folder : path
        An output folder (not searched recursively; a missing folder is fine).

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    here = _host_tag()
    now = time.time()
    for entry in folder.iterdir():
        m = _TEMP.match(entry.name)
        if m is None:
            continue
        try:
            if not entry.is_file() or entry.is_symlink():
                continue
            age = now - entry.stat().st_mtime
            if m["pid"] is None:
                stale = age > _ABANDONED_S["unknown"]
            elif m["host"] == here:
                stale = not _alive(int(m["pid"]))
            else:
                stale = age > _ABANDONED_S["other_host"]
            if stale:
                entry.unlink()
                removed.append(entry)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    If the body raises, the temporary file is removed and ``path`` is left as
    it was, so nothing already written is lost. A run killed outright leaves
    the hidden temporary file; :func:`clean_stale_temps` (called by
    :func:`ensure_out_dir`) removes it on the next run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the host and process in the name let a later run remove it if this one is killed
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{_host_tag()}-{os.getpid()}-",
        suffix=".tmp" + path.suffix,
        dir=path.parent,
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
    clean_stale_temps(path)
    return path


@contextmanager
def prepared_out_dir(out: str | os.PathLike[str] | None, stem: str) -> Iterator[Path]:
    """:func:`ensure_out_dir` that takes back the folders it made if the body fails.

    When the body raises (an unreadable input, Ctrl+C) before anything was
    written into the output folder, the folder is removed again, with any
    parents this call created, so a failed command leaves no empty folders.
    A folder that existed before, or that holds anything, is never removed.

    Parameters
    ----------
    out, stem
        As :func:`ensure_out_dir`.

    Yields
    ------
    Path
        The output folder.

    Raises
    ------
    InputError
        As :func:`ensure_out_dir`.
    """
    path = Path(out) if out is not None else Path.cwd() / "skysift-out" / stem
    made = []
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    try:
        yield ensure_out_dir(out, stem)
    except BaseException:
        for p in made:  # innermost first; rmdir refuses a folder that holds anything
            try:
                p.rmdir()
            except OSError:
                break
        raise


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks).

    Raises
    ------
    OSError
        If the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Double suffixes that are one file type (compressed FITS): ``x.fits.gz`` -> stem ``x``.
_DOUBLE_SUFFIXES = tuple(f"{f}{c}" for f in (".fits", ".fit", ".fts") for c in (".gz", ".bz2")) + (
    ".fits.fz",
)


def output_stem(path: str | os.PathLike[str]) -> str:
    """The stem of an input's outputs (``x.fits.gz`` -> ``x``).

    Several inputs of one run may share a stem; :func:`output_stems` makes
    their names unique.
    """
    path = Path(path)
    name = path.name
    for suffix in _DOUBLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def output_stems(files: list[Path]) -> list[str]:
    """Unique output names of a run's inputs, in the order of ``files``.

    An input whose stem no other input of the run shares keeps its stem
    (``img0.fits`` -> ``img0``). Inputs sharing a stem keep their file name
    with its suffix when that tells them apart (``x.fits`` and ``x.png`` ->
    ``x.fits``, ``x.png``); otherwise (``a/x.fits`` and ``b/x.fits``) the stem
    gets ``-`` and 8 hexadecimal digits of the SHA-256 of the resolved path
    (``x-3fa2c1d0``), the same on every run. Names are compared ignoring case
    (case-insensitive file systems); the same file given twice gets the same
    name.

    Parameters
    ----------
    files : list of Path
        The inputs.

    Returns
    -------
    list of str
        One name per input.
    """
    files = [Path(f) for f in files]
    resolved = [str(f.resolve()) for f in files]
    stems = [output_stem(f) for f in files]

    def clashes(names: list[str]) -> set[int]:
        owners: dict[str, set[str]] = {}
        for name, real in zip(names, resolved, strict=True):
            owners.setdefault(name.casefold(), set()).add(real)
        return {i for i, n in enumerate(names) if len(owners[n.casefold()]) > 1}

    names = list(stems)
    for i in clashes(names):
        names[i] = files[i].name
    for i in clashes(names):
        digest = hashlib.sha256(resolved[i].encode("utf-8")).hexdigest()[:8]
        names[i] = f"{stems[i]}-{digest}"
    return names
