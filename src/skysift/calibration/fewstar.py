"""All-sky camera calibration from a handful of stars when the site and time are known.

Low-resolution meteor cameras (320x240 or 640x480, 8-bit, lossy) show a few
bright stars and planets only, far fewer than the 15 the full all-sky model of
:mod:`skysift.calibration.allsky` needs. With the site and time known the
problem is constrained enough to solve from about five identified objects:

* **Model.** A known projection (equidistant by default) without distortion
  or tilt: ``x + i y = c + a w`` with ``w = z (cos az + i p sin az)``, ``z``
  the zenith angle in radians and ``p = +-1`` the handedness, is a complex
  *similarity* of the azimuthal-equidistant plane of the sky: only the
  centre ``c`` (the zenith pixel), the scale ``|a|`` (px per radian) and the
  rotation ``arg a`` are fitted (4 parameters; 2 pairs fix them). It is
  :func:`skysift.calibration.fisheye.fisheye_from_similarity` (the one-term
  equidistant model of Bettonvil 2005, "Fish-eye lenses and CCD cameras",
  WGN 33, 9) searched blindly.
* **Identification.** Every pair of bright detections against every pair of
  bright catalogue objects (Hipparcos stars and the planets) gives one
  similarity; those with a plausible scale and centre are scored by the
  number of catalogue objects that land within ``tol_px`` of a detection,
  and the best is refined by least squares on its matches.
* **Stacking.** :func:`stack_frames` averages the frames of a clip without
  the transient (sigma-clipped mean), which beats the median on 8-bit video
  (no quantisation steps) and reaches fainter stars;
  :func:`detect_point_sources` finds compact peaks on it.
* **Uncertainty.** The RMS of the matched positions and the parameter
  errors from the linear model's covariance ``s^2 (A^T A)^-1`` (``s^2`` the
  residual variance with ``2 n - 4`` degrees of freedom) are given in the
  solution's ``meta``; the chance level (matches of the same model turned by
  random rotations) too.

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel, x the
column.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from astropy.table import Table
from astropy.time import Time
from scipy import ndimage

from skysift.calibration.allsky import _matches_table, match_stars
from skysift.calibration.catalog import load_hipparcos, planet_altaz, star_altaz
from skysift.calibration.fisheye import FisheyeModel, FisheyeSolution, fisheye_from_similarity
from skysift.errors import InputError, NotEnoughStarsError
from skysift.io.frame import Site

__all__ = ["FEWSTAR_MIN", "detect_point_sources", "lens_circle", "solve_fewstar", "stack_frames"]

#: Fewest identified objects for a few-star calibration.
FEWSTAR_MIN = 5


def stack_frames(cube: np.ndarray, exclude=None, *, clip_sigma: float = 3.0) -> np.ndarray:
    """Sigma-clipped mean of a clip's frames, leaving out the listed ones.

    Parameters
    ----------
    cube : ndarray, shape (T, H, W)
    exclude : iterable of int, optional
        Frames left out (those with the bolide and its glow).
    clip_sigma : float, optional
        Values farther than this many robust sigmas (per pixel) from the
        median are left out of the mean. Default 3.

    Returns
    -------
    ndarray, shape (H, W), float32

    Raises
    ------
    InputError
        If ``cube`` is not 3-D or no frame is left.
    """
    cube = np.asarray(cube, np.float32)
    if cube.ndim != 3:
        msg = f"stack_frames needs a (T, H, W) cube, got shape {cube.shape}"
        raise InputError(msg)
    keep = np.ones(len(cube), bool)
    if exclude is not None:
        ex = np.asarray(list(exclude), int)
        keep[ex[(ex >= 0) & (ex < len(cube))]] = False
    if not keep.any():
        msg = "stack_frames: every frame is excluded"
        raise InputError(msg)
    sub = cube[keep]
    med = np.median(sub, axis=0)
    sig = 1.4826 * np.median(np.abs(sub - med), axis=0) + 0.5
    ok = np.abs(sub - med) <= clip_sigma * sig
    return (np.where(ok, sub, 0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1)).astype(np.float32)


def detect_point_sources(
    image: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    threshold_sigma: float = 5.0,
    border: int = 6,
    n_max: int = 40,
    max_texture: float = 3.0,
) -> Table:
    """Compact peaks (stars) on a smooth, vignetted all-sky image.

    The image less its 9 x 9 px running median, smoothed by a 1-px Gaussian,
    is searched for local maxima (7 x 7 px) above ``threshold_sigma`` times
    its robust noise; positions are the 3 x 3 px centroid, ``flux`` the sum
    of the high-passed image in 5 x 5 px.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    mask : ndarray of bool (H, W), optional
        ``True`` = not sky (ignored).
    threshold_sigma : float, optional
        Default 5.
    border : int, optional
        Peaks closer than this to the edge are dropped (px). Default 6.
    n_max : int, optional
        The brightest ``n_max`` peaks are kept. Default 40.
    max_texture : float, optional
        Peaks where the 15 x 15 px running median of the absolute high-pass
        image exceeds this many times its median over the image (textured
        ground, the lens rim) are dropped. Default 3.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` (px), ``flux`` (image units), ``snr``; brightest first.
    """
    img = np.nan_to_num(np.asarray(image, np.float32))
    hp = img - ndimage.median_filter(img, 9)
    s = ndimage.gaussian_filter(hp, 1.0)
    ok = np.ones(s.shape, bool) if mask is None else ~np.asarray(mask, bool)
    vals = s[ok]
    sig = 1.4826 * float(np.median(np.abs(vals - np.median(vals)))) if vals.size else 1.0
    sig = sig if sig > 0 else 1.0
    # textured ground (horizon glow, trees, roof edges, the lens rim): the running median of
    # |high-pass| is far above the sky's there, while a star adds a few pixels only
    texture = ndimage.median_filter(np.abs(hp), 15)
    calm = texture <= max_texture * float(np.median(texture[ok])) if ok.any() else ok
    peak = (s == ndimage.maximum_filter(s, 7)) & (s > threshold_sigma * sig) & ok & calm
    peak[:border], peak[-border:], peak[:, :border], peak[:, -border:] = False, False, False, False
    ys, xs = np.nonzero(peak)
    snr = s[ys, xs] / sig
    order = np.argsort(snr)[::-1][:n_max]
    rows = []
    for k in order:
        y, x = ys[k], xs[k]
        st = np.clip(hp[y - 1 : y + 2, x - 1 : x + 2], 0, None)
        tot = st.sum() or 1.0
        gy, gx = np.mgrid[-1:2, -1:2]
        rows.append(
            (
                x + float((gx * st).sum() / tot),
                y + float((gy * st).sum() / tot),
                float(hp[y - 2 : y + 3, x - 2 : x + 3].sum()),
                float(snr[k]),
            )
        )
    t = Table(rows=rows, names=["x", "y", "flux", "snr"], dtype=[float] * 4)
    t["x"].unit = t["y"].unit = "pix"
    return t


def lens_circle(
    image: np.ndarray, *, dark_fraction: float = 0.3
) -> tuple[float, float, float] | None:
    """The illuminated circle of a fisheye image, also when the sensor cuts it.

    The image (5 x 5 px median) is split at ``p3 + dark_fraction (p50 - p3)``
    (its dark surround versus the sky); the boundary of the largest lit
    region, away from the image edges, is fitted by an algebraic circle
    (Kasa 1976, IEEE Trans. Instrum. Meas. 25, 8) with two rounds of outlier
    rejection.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    dark_fraction : float, optional
        Default 0.3.

    Returns
    -------
    (xc, yc, radius) in pixels, or None
        None when no dark surround is seen or the fit is implausible (radius
        outside 0.25 to 1 times the image's larger side).
    """
    img = np.nan_to_num(np.asarray(image, np.float32))
    sm = ndimage.median_filter(img, 5)
    p3, p50 = np.percentile(sm, [3, 50])
    if not p50 > p3:
        return None
    lit = sm > p3 + dark_fraction * (p50 - p3)
    lab, n = ndimage.label(lit)
    if n == 0:
        return None
    big = ndimage.binary_fill_holes(lab == int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)
    edge = big & ~ndimage.binary_erosion(big)
    edge[:2], edge[-2:], edge[:, :2], edge[:, -2:] = False, False, False, False
    ys, xs = np.nonzero(edge)
    if xs.size < 30:
        return None
    xs, ys = xs.astype(float), ys.astype(float)
    for _ in range(3):
        mat = np.column_stack([xs, ys, np.ones_like(xs)])
        sol, *_ = np.linalg.lstsq(mat, xs**2 + ys**2, rcond=None)
        cx, cy = sol[0] / 2, sol[1] / 2
        r = math.sqrt(max(sol[2] + cx**2 + cy**2, 0.0))
        d = np.abs(np.hypot(xs - cx, ys - cy) - r)
        keep = d < max(2.0, 2.0 * float(np.median(d)))
        if keep.sum() < 30:
            break
        xs, ys = xs[keep], ys[keep]
    big_side = max(img.shape)
    if not 0.25 * big_side <= r <= big_side:
        return None
    return float(cx), float(cy), float(r)


def _catalogue(site: Site, time: Time, max_mag: float, min_alt: float, planets: bool):
    cat = star_altaz(load_hipparcos(max_mag, epoch=time), site, time)
    cat = cat[np.asarray(cat["alt"], float) >= min_alt]
    cat.sort("v_mag")
    alt = np.asarray(cat["alt"], float)
    az = np.asarray(cat["az"], float)
    is_star = np.ones(len(cat), bool)
    if planets:
        pl = planet_altaz(site, time)
        pl = pl[(np.asarray(pl["alt"], float) >= min_alt) & (pl["name"] != "moon")]
        alt = np.concatenate([np.asarray(pl["alt"], float), alt])
        az = np.concatenate([np.asarray(pl["az"], float), az])
        is_star = np.concatenate([np.zeros(len(pl), bool), is_star])
    return cat, alt, az, is_star


def _plane(alt, az, parity: int) -> np.ndarray:
    """Azimuthal-equidistant plane: ``z (cos az + i p sin az)``, z in radians."""
    z = np.radians(90.0 - np.asarray(alt, float))
    a = np.radians(np.asarray(az, float))
    return z * (np.cos(a) + 1j * parity * np.sin(a))


def _hypotheses(det: np.ndarray, w: np.ndarray, k_range, centre_box):
    """Similarities ``(a, c)`` from every detection pair against every catalogue pair."""
    n, m = len(det), len(w)
    i, j = np.triu_indices(n, 1)
    a_idx, b_idx = np.nonzero(~np.eye(m, dtype=bool))
    dd = det[j] - det[i]  # (P,)
    ww = w[b_idx] - w[a_idx]  # (Q,)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = dd[:, None] / ww[None, :]
    c = det[i][:, None] - a * w[a_idx][None, :]
    k = np.abs(a)
    (x0, x1), (y0, y1) = centre_box
    ok = (
        np.isfinite(a)
        & (k >= k_range[0])
        & (k <= k_range[1])
        & (c.real >= x0)
        & (c.real <= x1)
        & (c.imag >= y0)
        & (c.imag <= y1)
    )
    return a[ok], c[ok]


def _score(a: np.ndarray, c: np.ndarray, w: np.ndarray, det: np.ndarray, tol: float) -> np.ndarray:
    """Number of catalogue objects within ``tol`` px of a detection, per hypothesis."""
    out = np.zeros(len(a), int)
    for s in range(0, len(a), 4000):
        pred = c[s : s + 4000, None] + a[s : s + 4000, None] * w[None, :]  # (H, M)
        d = np.abs(pred[:, :, None] - det[None, None, :]).min(axis=2)
        out[s : s + 4000] = (d <= tol).sum(axis=1)
    return out


def solve_fewstar(
    stars: Table,
    site: Site,
    time: Time,
    shape: tuple[int, int],
    *,
    max_mag: float = 2.5,
    min_alt: float = 12.0,
    n_det: int = 12,
    n_cat: int = 30,
    min_matches: int = FEWSTAR_MIN,
    tol_px: float | None = None,
    horizon_range: tuple[float, float] = (0.3, 0.8),
    planets: bool = True,
    n_bright: int = 6,
    n_rescore: int = 400,
    circle: tuple[float, float, float] | None = None,
    max_rms: float = 3.0,
) -> FisheyeSolution:
    """Calibrate an all-sky camera from as few as five identified stars.

    Parameters
    ----------
    stars : astropy.table.Table
        Detections: ``x``, ``y`` (px) and ``flux``, e.g. from
        :func:`detect_point_sources` on a :func:`stack_frames` image.
    site : Site
    time : astropy.time.Time
        UTC of the image (mid-exposure).
    shape : tuple of int
        ``(H, W)``.
    max_mag : float, optional
        Faintest catalogue V magnitude used. Default 2.5.
    min_alt : float, optional
        Lowest altitude of catalogue objects, deg. Default 12.
    n_det, n_cat : int, optional
        Brightest detections / catalogue objects used to form hypotheses.
        Defaults 12 and 30.
    min_matches : int, optional
        Fewest identified objects for a solution. Default :data:`FEWSTAR_MIN`.
    tol_px : float, optional
        Match radius, px. Default ``max(3, 0.03 R)`` with ``R`` the horizon
        radius of the hypothesis (3 % distortion from the ideal projection).
    horizon_range : (lo, hi), optional
        Horizon radius ``R = |a| pi / 2`` searched, as fractions of the
        image's larger side. Default (0.3, 0.8). The zenith pixel is searched
        within the middle 60 % of the image.
    planets : bool, optional
        Use the planets (not the Moon) for the identification. Default True.
    n_bright : int, optional
        The brightest catalogue objects that a hypothesis puts on the image
        must be detected: each missing one costs two matches. Default 6.
    n_rescore : int, optional
        Hypotheses with the most matches (per handedness) rescored with
        that brightness consistency. Default 400.
    circle : (xc, yc, radius), optional
        The lens's illuminated circle (:func:`lens_circle`): the horizon
        radius is then searched within 0.8 to 1.25 times its radius, the
        zenith within 0.12 radius of its centre, and detections beyond
        0.93 radius (the rim) are dropped.
    max_rms : float, optional
        Largest accepted RMS of the identified objects about the model, in
        pixels. Default 3 (the model has no distortion terms: a right
        identification on a small meteor-camera frame stays within ~2 px,
        while chance alignments of a few bright stars within the wide match
        tolerance do not).

    Returns
    -------
    FisheyeSolution
        ``matches`` holds the identified catalogue stars (planets are used in
        the fit but not listed); ``meta``: ``method`` ("fewstar"),
        ``n_identified`` (stars and planets), ``param_err`` (``x0``, ``y0`` px,
        ``k1`` px/rad, ``rotation_deg``), ``n_chance``, ``tol_px``.

    Raises
    ------
    InputError
        If the table lacks ``x``, ``y``, ``flux`` or the site is not a Site.
    NotEnoughStarsError
        If fewer than ``min_matches`` objects are identified, or not clearly
        above the chance level; the message gives the numbers.
    """
    for col in ("x", "y", "flux"):
        if col not in stars.colnames:
            msg = f"stars needs columns x, y, flux; missing {col!r}"
            raise InputError(msg)
    if not isinstance(site, Site):
        msg = f"site must be a skysift Site, got {type(site).__name__}"
        raise InputError(msg)
    h, w = (int(v) for v in shape)
    order = np.argsort(-np.asarray(stars["flux"], float))
    if circle is not None:
        cx0, cy0, rc = circle
        rr = np.hypot(np.asarray(stars["x"], float) - cx0, np.asarray(stars["y"], float) - cy0)
        order = order[rr[order] <= 0.93 * rc]
    xy_all = np.column_stack([np.asarray(stars["x"], float), np.asarray(stars["y"], float)])[order]
    if len(xy_all) < min_matches:
        msg = f"not enough stars for a few-star calibration: {len(xy_all)} detected, need {min_matches}"
        raise NotEnoughStarsError(msg)
    det = xy_all[:n_det, 0] + 1j * xy_all[:n_det, 1]
    cat, alt, az, is_star = _catalogue(site, time, max_mag, min_alt, planets)
    sel = np.arange(min(n_cat, len(alt)))
    big = max(h, w)
    k_range = (horizon_range[0] * big / (math.pi / 2), horizon_range[1] * big / (math.pi / 2))
    box = ((0.2 * w, 0.8 * w), (0.2 * h, 0.8 * h))
    if circle is not None:
        k_range = (0.8 * rc / (math.pi / 2), 1.25 * rc / (math.pi / 2))
        box = ((cx0 - 0.12 * rc, cx0 + 0.12 * rc), (cy0 - 0.12 * rc, cy0 + 0.12 * rc))
    best = None
    all_det = xy_all[:, 0] + 1j * xy_all[:, 1]
    for parity in (1, -1):
        wp = _plane(alt[sel], az[sel], parity)
        a, c = _hypotheses(det, wp, k_range, box)
        if not len(a):
            continue
        tol0 = (
            tol_px
            if tol_px is not None
            else max(3.0, 0.03 * float(np.median(np.abs(a))) * math.pi / 2)
        )
        score = _score(a, c, wp, det, tol0)
        top = np.argsort(score)[::-1][:n_rescore]
        # the brightest objects predicted on the image must be seen: a hypothesis that puts
        # Jupiter or Arcturus where nothing was detected is penalised (brightness consistency)
        wall = _plane(alt, az, parity)
        for k in top:
            s2 = _consistency(a[k], c[k], wall, all_det, (h, w), n_bright, tol0)
            if best is None or s2 > best[0]:
                best = (s2, a[k], c[k], parity)
    if best is None or best[0] < 2:
        msg = "few-star calibration: no consistent identification of the detections"
        raise NotEnoughStarsError(msg)
    _, a, c, parity = best
    model = FisheyeModel(
        x0=float(c.real), y0=float(c.imag), rotation=math.degrees(math.atan2(a.imag, a.real)) % 360,
        radial=(float(abs(a)),), parity=parity, shape=(h, w),
    )  # fmt: skip
    tol = tol_px if tol_px is not None else max(3.0, 0.03 * abs(a) * math.pi / 2)
    for _ in range(4):
        i_det, i_cat, _d = match_stars(model, xy_all, alt, az, tol)
        if len(i_det) < 3:
            break
        model, _rms = fisheye_from_similarity(
            xy_all[i_det, 0], xy_all[i_det, 1], alt[i_cat], az[i_cat], shape=(h, w)
        )
    i_det, i_cat, dist = match_stars(model, xy_all, alt, az, tol)
    n = len(i_det)
    n_chance = _chance(model, xy_all, alt, az, tol)
    need = max(min_matches, int(math.ceil(2.0 * n_chance + 3)))
    rms = float(np.sqrt(np.mean(dist**2))) if n else float("nan")
    if n < need or not rms <= max_rms:
        msg = (
            f"not enough stars for a few-star calibration: {n} identified, need {need} "
            f"(chance level {n_chance:.1f}, RMS {rms:.2f} px, limit {max_rms:g} px)"
        )
        raise NotEnoughStarsError(msg)
    err = _param_errors(model, xy_all[i_det], alt[i_cat], az[i_cat])
    stars_only = is_star[i_cat]
    rows = cat[i_cat[stars_only] - int((~is_star).sum())]
    matches = _matches_table(rows, order[i_det[stars_only]], xy_all[i_det[stars_only]],
                       dist[stars_only], np.asarray(stars["flux"], float)[order][i_det[stars_only]])  # fmt: skip
    return FisheyeSolution(
        model=replace(model, shape=(h, w)),
        matches=matches,
        rms_px=rms,
        n_matched=len(matches),
        n_chance=n_chance,
        site=site,
        time=time,
        meta={
            "method": "fewstar",
            "n_identified": n,
            "n_planets": int(n - stars_only.sum()),
            "param_err": err,
            "tol_px": float(tol),
            "projection": model.projection,
        },
    )


def _consistency(a, c, w_all, det, shape, n_bright: int, tol: float) -> float:
    """Matched objects (all magnitudes) minus the brightest ones predicted on the image but unseen."""
    h, w = shape
    pred = c + a * w_all
    d = np.abs(pred[:, None] - det[None, :]).min(axis=1)
    inside = (pred.real >= 8) & (pred.real <= w - 9) & (pred.imag >= 8) & (pred.imag <= h - 9)
    matched = d <= tol
    bright = np.flatnonzero(inside)[:n_bright]
    missed = int((~matched[bright]).sum())
    return float(matched.sum() - 2 * missed)


def _chance(model: FisheyeModel, xy: np.ndarray, alt, az, tol: float, n: int = 24) -> float:
    """Mean matches of the model turned by rotations away from the solution (null test)."""
    counts = []
    for rot in np.linspace(20.0, 340.0, n):
        m = replace(model, rotation=(model.rotation + rot) % 360)
        counts.append(len(match_stars(m, xy, alt, az, tol)[0]))
    return float(np.mean(counts))


def _param_errors(model: FisheyeModel, xy: np.ndarray, alt, az) -> dict[str, float]:
    """1-sigma errors of x0, y0, k1, rotation from the linear similarity's covariance."""
    n = len(xy)
    if n <= 2:
        return {"x0": math.nan, "y0": math.nan, "k1": math.nan, "rotation_deg": math.nan}
    z = np.radians(90.0 - np.asarray(alt, float))
    a = np.radians(np.asarray(az, float))
    u, v = z * np.cos(a), z * np.sin(a)
    p = model.parity
    one, zero = np.ones(n), np.zeros(n)
    mat = np.vstack(
        [np.column_stack([one, zero, u, -p * v]), np.column_stack([zero, one, p * v, u])]
    )
    b = np.concatenate([xy[:, 0], xy[:, 1]])
    sol, *_ = np.linalg.lstsq(mat, b, rcond=None)
    res = mat @ sol - b
    dof = max(1, 2 * n - 4)
    cov = float(res @ res) / dof * np.linalg.pinv(mat.T @ mat)
    al, be = sol[2], sol[3]
    k1 = math.hypot(al, be)
    jk = np.array([al / k1, be / k1])
    jr = np.array([-be / k1**2, al / k1**2])
    c2 = cov[2:, 2:]
    return {
        "x0": float(math.sqrt(max(cov[0, 0], 0))),
        "y0": float(math.sqrt(max(cov[1, 1], 0))),
        "k1": float(math.sqrt(max(jk @ c2 @ jk, 0))),
        "rotation_deg": float(math.degrees(math.sqrt(max(jr @ c2 @ jr, 0)))),
    }


def fewstar_fallback(
    frame, solve_stars: Table, site: Site, time: Time, full_err: Exception
) -> tuple[FisheyeSolution, str]:
    """The few-star model where the full all-sky fit failed (used by ``calibrate``).

    Point sources are found on the frame (:func:`detect_point_sources`, the
    lens circle from :func:`lens_circle`) and :func:`solve_fewstar` is run;
    each match's ``star_index`` is the row of ``solve_stars`` within 3 px
    (-1 if none).

    Returns
    -------
    (FisheyeSolution, "fisheye")

    Raises
    ------
    NotEnoughStarsError or CalibrationError
        The full model's error type, naming both failures (the full model's
        and the few-star model's).
    """
    image = np.asarray(frame.data, np.float32)
    mask = frame.mask if frame.mask is not None and frame.mask.shape == image.shape else None
    try:
        stars = detect_point_sources(image, mask=mask)
        sol = solve_fewstar(stars, site, time, image.shape, circle=lens_circle(image))
    except NotEnoughStarsError as err:
        # the full model's error type (and exit code), naming both failures
        msg = f"{full_err}; few-star model: {err}"
        raise type(full_err)(msg) from err
    m = sol.matches
    if len(solve_stars) and len(m):
        d = np.hypot(
            np.asarray(m["x"])[:, None] - np.asarray(solve_stars["x"])[None, :],
            np.asarray(m["y"])[:, None] - np.asarray(solve_stars["y"])[None, :],
        )
        j = np.argmin(d, axis=1)
        m["star_index"] = np.where(d[np.arange(len(j)), j] <= 3.0, j, -1)
    else:
        m["star_index"] = np.full(len(m), -1, np.int64)
    sol.meta["full_model_error"] = str(full_err)
    return sol, "fisheye"
