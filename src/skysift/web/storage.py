"""The web app's data folder: safe paths, uploads and their checks.

Layout of the data folder (``skysift serve --data-dir DIR``)::

    DIR/uploads/<upload id>/<file name>    one uploaded file per folder
    DIR/uploads/<upload id>/upload.json    what the upload is (name, kind, size, site, time)
    DIR/jobs/<job id>/job.json             state of a job (see :mod:`skysift.web.jobs`)
    DIR/jobs/<job id>/...                  its outputs

Nothing is read or written outside ``DIR``: identifiers are checked against a
strict pattern before they become folder names, file names are reduced to a
safe set of characters, and every path taken from a request is resolved and
checked to lie inside its folder (:func:`safe_child`).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skysift.errors import InputError, SkysiftError
from skysift.io import read
from skysift.outputs.files import write_json

__all__ = [
    "ACCEPTED",
    "UploadError",
    "NotFoundError",
    "ConflictError",
    "new_id",
    "check_id",
    "safe_child",
    "safe_filename",
    "UploadStore",
]

#: Accepted upload suffixes -> kind ("image", "video" or "cube": a FITS file may hold either).
ACCEPTED: dict[str, str] = {
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
    ".mp4": "video",
    ".avi": "video",
    ".mkv": "video",
    ".mov": "video",
}

_ID = re.compile(r"^[0-9a-f]{12}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadError(InputError):
    """An upload was refused (wrong type, too big, unreadable).

    Attributes
    ----------
    status : int
        HTTP status code to answer with (400, 413 or 415).
    """

    def __init__(self, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.status = status


class NotFoundError(SkysiftError):
    """A job, upload or file that a request named does not exist (HTTP 404)."""


class ConflictError(SkysiftError):
    """A request conflicts with the state of the data (HTTP 409): an upload a job still uses."""


def new_id() -> str:
    """A fresh random identifier: 12 lowercase hexadecimal digits."""
    return secrets.token_hex(6)


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a well-formed identifier.

    Raises
    ------
    NotFoundError
        If it is not 12 lowercase hexadecimal digits (so it can never name a
        path such as ``..``).
    """
    if not isinstance(value, str) or not _ID.match(value):
        msg = f"no such {what}: {value!r}"
        raise NotFoundError(msg)
    return value


def safe_child(root: Path, relative: str) -> Path:
    """Resolve ``relative`` inside ``root``, refusing anything that leaves it.

    Parameters
    ----------
    root : Path
        The folder the path must stay in.
    relative : str
        A relative path from a request, ``/``-separated.

    Returns
    -------
    Path
        The resolved path (it may not exist).

    Raises
    ------
    NotFoundError
        If the path is absolute, has a ``..`` or hidden (``.``-prefixed)
        component, a backslash or NUL, or resolves (through symbolic links)
        outside ``root``.
    """
    msg = f"no such file: {relative!r}"
    if not relative or "\\" in relative or "\x00" in relative or relative.startswith("/"):
        raise NotFoundError(msg)
    parts = relative.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotFoundError(msg)
    base = root.resolve()
    path = (base / Path(*parts)).resolve()
    if not path.is_relative_to(base):
        raise NotFoundError(msg)
    return path


def safe_filename(name: str) -> str:
    """Reduce a client's file name to ``[A-Za-z0-9._-]``, keeping its suffix.

    Raises
    ------
    UploadError
        If nothing usable is left.
    """
    base = re.split(r"[\\/]", str(name))[-1].strip()
    clean = _UNSAFE.sub("_", base).lstrip(".")[-120:]
    if not clean or clean in (".", ".."):
        msg = f"bad file name {name!r}"
        raise UploadError(msg)
    return clean


def _suffix(name: str) -> str:
    lower = name.lower()
    return ".fits" if lower.endswith((".fits.gz", ".fit.gz")) else Path(lower).suffix


def _sniff(head: bytes, kind: str) -> bool:
    """Does the start of the file look like the type its suffix claims?"""
    if kind == "fits":
        return head.startswith(b"SIMPLE  =") or head.startswith(b"\x1f\x8b")
    if kind == "image":
        return (
            head.startswith(b"\x89PNG\r\n\x1a\n")
            or head.startswith(b"\xff\xd8\xff")
            or head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
        )
    # Videos: ISO media (mp4/mov: 'ftyp', 'moov', 'wide', 'mdat' at byte 4), AVI (RIFF), Matroska.
    return (
        head[4:8] in (b"ftyp", b"moov", b"wide", b"mdat", b"free", b"skip")
        or (head.startswith(b"RIFF") and head[8:11] == b"AVI")
        or head.startswith(b"\x1a\x45\xdf\xa3")
    )


def _describe(path: Path, kind: str) -> dict[str, Any]:
    """Read an uploaded file with skysift's readers; return its metadata.

    Raises
    ------
    UploadError
        If the file cannot be read (truncated, corrupt).
    """

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Two frames are enough to know a sequence from a single image.
            data = read(path, max_frames=2)
    except SkysiftError as err:
        msg = f"{path.name}: cannot be read: {str(err).replace(str(path), path.name)}"
        raise UploadError(msg) from err
    except Exception as err:  # noqa: BLE001 - third-party decoders raise anything
        msg = f"{path.name}: cannot be read ({type(err).__name__}: {err})"
        raise UploadError(msg) from err
    first = data if not hasattr(data, "frames") else data.frames[0]
    frames = 1 if not hasattr(data, "frames") else len(data.frames)
    site = getattr(first, "site", None) or getattr(data, "site", None)
    t = getattr(first, "time", None)
    return {
        "shape": [int(s) for s in first.shape],
        "sequence": kind == "video" or frames > 1,
        "site": site.to_dict() if site is not None else None,
        "time": t.utc.isot if t is not None else None,
        "exposure": getattr(first, "exposure", None),
    }


@dataclass
class UploadStore:
    """Uploaded files, one folder each, under ``root``.

    Parameters
    ----------
    root : Path
        ``DIR/uploads``.
    max_bytes : int
        Largest accepted upload, in bytes.
    """

    root: Path
    max_bytes: int

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    async def save(self, filename: str, chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        """Stream an upload to disk, check it and return its record.

        The body is written chunk by chunk and refused as soon as it passes
        ``max_bytes``; the file is then checked by its first bytes and read
        with :func:`skysift.io.read`. A refused upload leaves nothing behind.

        Raises
        ------
        UploadError
            415 for a type that is not accepted, 413 for a file too big, 400
            for an empty, mislabelled, truncated or unreadable file.
        """
        name = safe_filename(filename)
        kind = ACCEPTED.get(_suffix(name))
        if kind is None:
            accepted = ", ".join(sorted(ACCEPTED))
            msg = f"{name}: file type not accepted; accepted: {accepted} (and .fits.gz)"
            raise UploadError(msg, 415)
        uid = new_id()
        folder = self.root / uid
        folder.mkdir()
        path = folder / name
        size = 0
        ok = False
        try:
            with path.open("wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        msg = (
                            f"{name}: too big: more than {self.max_bytes / 1e6:.0f} MB "
                            "(the limit is set by skysift serve --max-upload-mb)"
                        )
                        raise UploadError(msg, 413)
                    fh.write(chunk)
            if size == 0:
                msg = f"{name}: empty file"
                raise UploadError(msg)
            with path.open("rb") as fh:
                head = fh.read(16)
            if not _sniff(head, kind):
                msg = f"{name}: the content is not a {kind} file as its name says"
                raise UploadError(msg, 415)
            info = _describe(path, kind)
            record = {
                "id": uid,
                "name": name,
                "kind": "video" if info["sequence"] else "image",
                "size": size,
                "created": time.time(),
                **info,
            }
            write_json(record, folder / "upload.json")
            ok = True
            return record
        finally:
            if not ok:
                for p in folder.iterdir():
                    p.unlink()
                folder.rmdir()

    def get(self, uid: str) -> dict[str, Any]:
        """The record of an upload.

        Raises
        ------
        NotFoundError
            If there is no such upload.
        """

        check_id(uid, "upload")
        meta = self.root / uid / "upload.json"
        if not meta.is_file():
            msg = f"no such upload: {uid!r}"
            raise NotFoundError(msg)
        return json.loads(meta.read_text(encoding="utf-8"))

    def path(self, uid: str) -> Path:
        """The uploaded file's path (inside ``root``)."""
        record = self.get(uid)
        return safe_child(self.root, f"{uid}/{record['name']}")

    def delete(self, uid: str) -> None:
        """Remove an upload and its folder.

        Raises
        ------
        NotFoundError
            If there is no such upload.
        """
        self.get(uid)
        shutil.rmtree(self.root / uid)

    def list(self) -> list[dict[str, Any]]:
        """Every upload, newest first."""
        out = []
        for folder in self.root.iterdir():
            if _ID.match(folder.name) and (folder / "upload.json").is_file():
                out.append(self.get(folder.name))
        return sorted(out, key=lambda r: r["created"], reverse=True)
