"""Manual fisheye calibration from clicked star pairs (the bolide report's section 5.3).

When the automatic solve (:func:`skysift.calibration.allsky.solve_fisheye`)
fails -- a partly cloudy frame, an unusual lens -- a user can identify a few
stars by hand. A *pairs file* is a CSV or ECSV table with one row per star:

=======  ==========================================================
column   meaning
=======  ==========================================================
x        pixel column of the star, 0-based ((0, 0) = centre of the
         first pixel)
y        pixel row of the star, 0-based
star     ``HIP 91262``, ``91262`` or an IAU proper name (``Vega``)
=======  ==========================================================

for example::

    x,y,star
    512.3,301.8,Vega
    640.0,455.1,HIP 97649
    ...

At least 4 pairs are needed (4 model parameters: zenith pixel, rotation,
scale); 6 or more also fit the cubic radial term, 10 or more the quintic.
:func:`fit_fisheye_pairs` fits a :class:`~skysift.calibration.fisheye.FisheyeModel`
to them and :func:`extend_to_detections` then identifies all the detected
stars with the same refinement as the automatic solve.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.time import Time

from skysift.calibration.allsky import _fit_model, _matches_table, solve_fisheye
from skysift.calibration.catalog import lookup_hip, resolve_star, star_altaz
from skysift.calibration.fisheye import FisheyeSolution, fisheye_from_similarity
from skysift.errors import InputError, NotEnoughStarsError
from skysift.io.frame import Site

__all__ = ["MIN_PAIRS", "read_pairs", "fit_fisheye_pairs", "extend_to_detections"]

#: Fewest star pairs for a manual calibration.
MIN_PAIRS = 4


def read_pairs(path: str | os.PathLike[str]) -> Table:
    """Read a pairs file (CSV or ECSV with columns ``x``, ``y``, ``star``).

    Parameters
    ----------
    path : str or path-like
        The file; ``.ecsv`` is read as ECSV, anything else as CSV.

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` (float, px), ``star`` (str, as written) and
        ``hip`` (int, resolved with :func:`~skysift.calibration.catalog.resolve_star`).

    Raises
    ------
    InputError
        If the file cannot be read, lacks a column, has a non-finite
        position, a star that cannot be resolved, a star given twice, or
        fewer than :data:`MIN_PAIRS` rows; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"pairs file {path} does not exist"
        raise InputError(msg)
    fmt = "ascii.ecsv" if path.suffix.lower() == ".ecsv" else "ascii.csv"
    try:
        t = Table.read(path, format=fmt)
    except Exception as err:  # astropy raises many types for malformed text
        msg = f"cannot read pairs file {path}: {err}"
        raise InputError(msg) from err
    names = {c.lower().strip(): c for c in t.colnames}
    missing = [c for c in ("x", "y", "star") if c not in names]
    if missing:
        msg = f"pairs file {path} lacks column(s) {missing}; expected x, y, star"
        raise InputError(msg)
    try:
        x = np.asarray(t[names["x"]], dtype=float)
        y = np.asarray(t[names["y"]], dtype=float)
    except (TypeError, ValueError) as err:
        msg = f"pairs file {path}: x and y must be numbers ({err})"
        raise InputError(msg) from err
    stars = [str(s).strip() for s in t[names["star"]]]
    if len(stars) < MIN_PAIRS:
        msg = f"pairs file {path} has {len(stars)} star pair(s); need at least {MIN_PAIRS}"
        raise InputError(msg)
    bad = np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))
    if bad.size:
        msg = f"pairs file {path}: non-finite x or y in row(s) {[int(i) + 1 for i in bad]}"
        raise InputError(msg)
    hips = []
    for i, s in enumerate(stars):
        try:
            hips.append(resolve_star(s))
        except InputError as err:
            msg = f"pairs file {path}, row {i + 1}: {err}"
            raise InputError(msg) from err
    if len(set(hips)) != len(hips):
        dup = sorted({h for h in hips if hips.count(h) > 1})
        msg = (
            f"pairs file {path}: star(s) given more than once: {', '.join(f'HIP {h}' for h in dup)}"
        )
        raise InputError(msg)
    return Table({"x": x, "y": y, "star": stars, "hip": np.asarray(hips, dtype=np.int64)})


def fit_fisheye_pairs(
    xy,
    hip,
    site: Site,
    time: Time,
    shape: tuple[int, int],
    *,
    fit_tilt: bool = False,
) -> FisheyeSolution:
    """Fit a fisheye model to hand-identified stars.

    A closed-form equidistant fit (both parities, see
    :func:`~skysift.calibration.fisheye.fisheye_from_similarity`) starts a
    soft-L1 least-squares fit of the zenith pixel, rotation and ``k1``, plus
    ``k3`` from 6 pairs, ``k5`` from 10, and the tilt from 12 if
    ``fit_tilt``.

    Parameters
    ----------
    xy : array_like, shape (N, 2)
        Pixel positions (x, y), 0-based, N >= 4.
    hip : array_like of int, shape (N,)
        Hipparcos numbers of the stars.
    site : Site
        Observing site.
    time : astropy.time.Time
        Time of the exposure, UTC.
    shape : tuple of int
        Image shape ``(H, W)``.
    fit_tilt : bool, optional
        Also fit the tilt of the optical axis (12 pairs or more). Default False.

    Returns
    -------
    FisheyeSolution
        ``matches.star_index`` is -1 (no detection table).

    Raises
    ------
    InputError
        If the arrays disagree in length, fewer than 4 pairs are given, a
        number is not in the catalogue, or a star is below the horizon at
        ``time`` (a wrong identification or a wrong time).
    """
    xy = np.asarray(xy, dtype=float)
    hips = np.asarray(hip, dtype=np.int64).ravel()
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] != hips.size:
        msg = f"xy must have shape (N, 2) with N = len(hip) = {hips.size}, got {xy.shape}"
        raise InputError(msg)
    if hips.size < MIN_PAIRS:
        msg = f"need at least {MIN_PAIRS} star pairs, got {hips.size}"
        raise InputError(msg)
    h, w = (int(s) for s in shape)
    cat = star_altaz(lookup_hip(hips, epoch=time), site, time)
    alt = np.asarray(cat["alt"], float)
    az = np.asarray(cat["az"], float)
    below = np.flatnonzero(alt < 0)
    if below.size:
        ids = ", ".join(f"HIP {hips[i]} (alt {alt[i]:.1f} deg)" for i in below)
        msg = f"star(s) below the horizon at {time.isot}: {ids}; check the names and the time"
        raise InputError(msg)
    model, rms0 = fisheye_from_similarity(xy[:, 0], xy[:, 1], alt, az, shape=(h, w))
    n = hips.size
    names: tuple[str, ...] = ("x0", "y0", "rotation", "k1")
    if n >= 6:
        names += ("k3",)
    if n >= 10:
        names += ("k5",)
    if fit_tilt and n >= 12:
        names += ("tilt_e", "tilt_n")
    model = _fit_model(model, xy, alt, az, names, f_scale=max(1.0, 0.5 * rms0))
    px, py = model.altaz_to_pixel(alt, az)
    resid = np.hypot(np.atleast_1d(px) - xy[:, 0], np.atleast_1d(py) - xy[:, 1])
    matches = _matches_table(cat, np.full(n, -1), xy, resid, None)
    return FisheyeSolution(
        model=model,
        matches=matches,
        rms_px=float(math.sqrt(np.mean(resid**2))),
        n_matched=n,
        site=site,
        time=time,
    )


def extend_to_detections(
    solution: FisheyeSolution,
    stars: Table,
    *,
    max_mag: float = 6.5,
    image: np.ndarray | None = None,
    **kwargs,
) -> FisheyeSolution:
    """Identify all detected stars starting from a (manual) solution.

    Runs :func:`~skysift.calibration.allsky.solve_fisheye` with
    ``initial=solution.model``: the same iterative matching, refitting and
    validation as the automatic solve.

    Parameters
    ----------
    solution : FisheyeSolution
        E.g. from :func:`fit_fisheye_pairs`; must carry ``site`` and ``time``.
    stars : astropy.table.Table
        Detections with columns ``x``, ``y``, ``flux``.
    max_mag : float, optional
        Faintest catalogue V magnitude. Default 6.5.
    image : ndarray, optional
        The image (see :func:`~skysift.calibration.allsky.solve_fisheye`).
    **kwargs
        Other keywords of ``solve_fisheye``.

    Returns
    -------
    FisheyeSolution

    Raises
    ------
    InputError
        If the solution has no site, time or image shape.
    NotEnoughStarsError
        If the extension is not convincing (see ``solve_fisheye``).
    """
    if solution.site is None or solution.time is None or solution.model.shape is None:
        msg = "the solution must carry site, time and the model's image shape"
        raise InputError(msg)
    try:
        return solve_fisheye(
            stars,
            solution.site,
            solution.time,
            solution.model.shape,
            max_mag=max_mag,
            initial=solution.model,
            image=image,
            **kwargs,
        )
    except NotEnoughStarsError as err:
        msg = f"the manual calibration could not be extended to the detections: {err}"
        raise NotEnoughStarsError(msg) from err
