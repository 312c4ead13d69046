"""Postage stamps of single objects for classifiers: SSO trails, cosmic rays, galaxies, stars.

Following the Euclid SSO paper (§2.2), a stamp is square with side = the
object's extent + a padding drawn from N(65, 5) pixels, and comes as a single
exposure ``(H, W)`` or as a multi-dither stack ``(C, H, W)`` (one channel per
dither, 3 in the paper). In dither ``c`` every object is displaced by the
pointing offset ``dither_offsets[c]``; a solar-system object also moves along
its trail between the dithers.

Stamps are in electrons: sky ``background`` + noise-free object, with Poisson
noise and Gaussian read noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table

from skysift.errors import InputError
from skysift.simulation.sources import render_cosmic_rays, render_galaxy, render_stars
from skysift.simulation.streaks import render_sso_trail
from skysift.simulation.truth import SimTruth, _table_from_records, stack_records, truth_records

__all__ = ["STAMP_KINDS", "make_stamp", "stamp_size"]

#: The stamp classes.
STAMP_KINDS = ("sso", "cosmic_ray", "galaxy", "star")


def stamp_size(
    extent: float,
    rng: np.random.Generator,
    *,
    padding_mean: float = 65.0,
    padding_sigma: float = 5.0,
) -> int:
    """Side of a square stamp: ``round(extent + N(padding_mean, padding_sigma))``, ≥ extent + 8.

    References
    ----------
    Euclid SSO paper, §2.2 (stamp size = object extent + padding ~ N(65, 5) pixels).
    """
    pad = rng.normal(padding_mean, padding_sigma)
    return int(max(round(extent + pad), np.ceil(extent) + 8))


def make_stamp(
    kind: str,
    rng: np.random.Generator | int | None = None,
    *,
    n_dithers: int | None = None,
    dither_offsets: Any = None,
    dither_interval: float = 1.2,
    psf: Any = 2.5,
    flux_range: tuple[float, float] = (2e3, 5e4),
    background: float = 100.0,
    read_noise: float = 5.0,
    sso_length_range: tuple[float, float] = (5.0, 60.0),
    padding_mean: float = 65.0,
    padding_sigma: float = 5.0,
) -> tuple[np.ndarray, Table]:
    """One postage stamp of a given class and its truth.

    Parameters
    ----------
    kind : {"sso", "cosmic_ray", "galaxy", "star"}
        Object class.
    rng : Generator, int or None
        Random state.
    n_dithers : int, optional
        None (default): a single exposure, shape (H, W). An integer C ≥ 1:
        C dithered exposures as channels, shape (C, H, W) (the paper uses 3).
    dither_offsets : array_like, shape (C, 2), optional
        ``(dx, dy)`` pointing offset of each dither in pixels (objects move by
        ``+offset``). Default all zero (registered stamps).
    dither_interval : float, optional
        Start-to-start time between dithers in units of the exposure; an SSO
        moves ``dither_interval × trail`` between dithers. Default 1.2.
    psf : PSF or float, optional
        PSF (a float is a Gaussian FWHM in pixels). Default 2.5.
    flux_range : (float, float), optional
        Object flux drawn log-uniformly, electrons. Default (2e3, 5e4).
        (Cosmic rays use their own charge model.)
    background : float, optional
        Sky level, electrons per pixel, ≥ 0. Default 100.
    read_noise : float, optional
        Electrons rms, ≥ 0. Default 5.
    sso_length_range : (float, float), optional
        SSO trail length in pixels per exposure. Default (5, 60).
    padding_mean, padding_sigma : float, optional
        Padding distribution in pixels. Default N(65, 5) (Euclid SSO paper §2.2).

    Returns
    -------
    stamp : ndarray of float32, shape (H, W) or (C, H, W)
        Electrons.
    truth : astropy.table.Table
        One row per channel (``frame`` = channel), truth schema
        (:data:`~skysift.simulation.truth.TRUTH_COLUMNS`), plus ``meta``:
        ``kind``, ``extent`` (pixels), ``padding`` (pixels) and
        ``dither_offsets``.

    Raises
    ------
    InputError
        For an unknown kind (the message lists :data:`STAMP_KINDS`), bad
        ``n_dithers`` / ``dither_offsets``, or negative noise parameters.

    References
    ----------
    Euclid SSO paper, §2.2: stamp classes, sizes and dithers.
    """
    if kind not in STAMP_KINDS:
        msg = f"kind must be one of {list(STAMP_KINDS)}, got {kind!r}"
        raise InputError(msg)
    if n_dithers is not None and int(n_dithers) < 1:
        msg = f"n_dithers must be None (single exposure) or >= 1, got {n_dithers}"
        raise InputError(msg)
    n_ch = 1 if n_dithers is None else int(n_dithers)
    offs = (
        np.zeros((n_ch, 2)) if dither_offsets is None else np.asarray(dither_offsets, dtype=float)
    )
    if offs.shape != (n_ch, 2):
        msg = f"dither_offsets must have shape ({n_ch}, 2) for n_dithers={n_dithers}, got {offs.shape}"
        raise InputError(msg)
    if background < 0 or read_noise < 0:
        msg = f"background and read_noise must be >= 0 electrons, got {background}, {read_noise}"
        raise InputError(msg)
    lo, hi = flux_range
    if not 0 < lo <= hi:
        msg = f"flux_range must satisfy 0 < lo <= hi electrons, got {flux_range}"
        raise InputError(msg)
    gen = np.random.default_rng(rng)
    flux = float(np.exp(gen.uniform(np.log(lo), np.log(hi))))
    sigma = float(np.sqrt(background + read_noise**2)) if background + read_noise > 0 else None

    # ---- object parameters and extent (over all dithers)
    params: dict[str, Any] = {}
    if kind == "sso":
        length = gen.uniform(*sso_length_range)
        ang = gen.uniform(0, 2 * np.pi)
        vx, vy = length * np.cos(ang), length * np.sin(ang)
        params["trail"] = (vx, vy)
        steps = dither_interval * np.arange(n_ch)
        px = np.concatenate([steps * vx + offs[:, 0], steps * vx + vx + offs[:, 0]])
        py = np.concatenate([steps * vy + offs[:, 1], steps * vy + vy + offs[:, 1]])
    elif kind == "galaxy":
        params.update(
            n=gen.uniform(0.5, 4.0), r_e=gen.uniform(1.0, 6.0), ellipticity=gen.uniform(0.0, 0.7),
            pa=gen.uniform(0.0, 180.0),
        )  # fmt: skip
        px, py = offs[:, 0], offs[:, 1]
    elif kind == "cosmic_ray":
        params["seed"] = int(gen.integers(2**31))
        params["length"] = gen.uniform(1.0, 25.0)
        px, py = offs[:, 0], offs[:, 1]
    else:
        px, py = offs[:, 0], offs[:, 1]
    obj_ext = {
        "sso": 0.0,
        "galaxy": 2 * params.get("r_e", 0.0),
        "cosmic_ray": params.get("length", 0.0),
        "star": 0.0,
    }[kind]
    extent = float(max(np.ptp(px), np.ptp(py))) + obj_ext
    side = stamp_size(extent, gen, padding_mean=padding_mean, padding_sigma=padding_sigma)
    padding = side - extent
    # reference point: centre the whole dither pattern in the stamp (sub-pixel jitter)
    cx = (side - 1) / 2 - (px.min() + px.max()) / 2 + gen.uniform(-0.5, 0.5)
    cy = (side - 1) / 2 - (py.min() + py.max()) / 2 + gen.uniform(-0.5, 0.5)

    shape = (side, side)
    channels = np.empty((n_ch, side, side), dtype=np.float32)
    recs = []
    for c in range(n_ch):
        ox, oy = cx + offs[c, 0], cy + offs[c, 1]
        if kind == "sso":
            vx, vy = params["trail"]
            t = dither_interval * c
            img, tr = render_sso_trail(
                shape,
                ox + t * vx,
                oy + t * vy,
                ox + (t + 1) * vx,
                oy + (t + 1) * vy,
                flux,
                psf,
                sigma=sigma,
            )
        elif kind == "galaxy":
            img, tr = render_galaxy(
                shape, ox, oy, flux, params["n"], params["r_e"], ellipticity=params["ellipticity"],
                pa=params["pa"], psf=psf, sigma=sigma,
            )  # fmt: skip
        elif kind == "star":
            img, tr = render_stars(shape, [ox], [oy], [flux], psf, sigma=sigma)
        else:
            img, tr = _centred_cosmic_ray(shape, ox, oy, params, sigma)
        rec = tr.records.copy()
        rec["frame"] = c
        recs.append(rec)
        expected = img + background
        noisy = gen.poisson(expected).astype(float) + gen.normal(0.0, read_noise, shape)
        channels[c] = noisy.astype(np.float32)
    truth = _table_from_records(stack_records(recs))
    truth.meta.update(kind=kind, extent=extent, padding=padding, dither_offsets=offs.tolist())
    stamp = channels[0] if n_dithers is None else channels
    return stamp, truth


def _centred_cosmic_ray(
    shape: tuple[int, int], x: float, y: float, params: dict[str, Any], sigma: float | None
) -> tuple[np.ndarray, Any]:
    """One cosmic ray of the given length, its charge centroid moved to (x, y) (whole pixels)."""
    big = (shape[0] * 3, shape[1] * 3)
    length = params["length"]
    img, tr = render_cosmic_rays(big, 1, params["seed"], length_range=(length, length), sigma=sigma)
    # render_cosmic_rays places the ray at random: shift it so its centroid lands on (x, y)
    r = tr.records[0]
    dx, dy = int(round(x - r["x"])), int(round(y - r["y"]))
    out = np.zeros(shape)
    ys, xs = np.nonzero(img)
    ys2, xs2 = ys + dy, xs + dx
    ok = (xs2 >= 0) & (xs2 < shape[1]) & (ys2 >= 0) & (ys2 < shape[0])
    out[ys2[ok], xs2[ok]] = img[ys[ok], xs[ok]]
    mask = out > 0
    rec = r.copy()
    for k in ("x", "x1", "x2", "bbox_x1", "bbox_x2"):
        rec[k] += dx
    for k in ("y", "y1", "y2", "bbox_y1", "bbox_y2"):
        rec[k] += dy
    rec = truth_records(
        [
            {
                name: rec[name].item() if hasattr(rec[name], "item") else rec[name]
                for name in rec.dtype.names
            }
        ]
    )
    return out, SimTruth(mask=mask, labels=mask.astype(np.int32), records=rec)
