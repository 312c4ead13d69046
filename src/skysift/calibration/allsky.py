"""Automatic all-sky (fisheye) calibration on the stars, from the site and time only.

The automatic calibration
-------------------------
:func:`solve_fisheye` needs only the site, the time and the detections: it
votes over a grid of zenith pixels, scales and both parities for the
rotation that superposes the brightest detections on the brightest
catalogue stars above the horizon (a Hough transform in rotation), fits the
best hypotheses with iterative robust least squares while the catalogue
deepens and the match radius shrinks, and accepts the result only if the
number of matches far exceeds the chance level measured with the same
model rotated and mirrored (a null test) and the residuals are small;
otherwise it raises :class:`~skysift.errors.NotEnoughStarsError`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from astropy.table import Table
from astropy.time import Time
from scipy import ndimage
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from skysift._validation import check_shape
from skysift.calibration.catalog import (
    load_hipparcos,
    planet_altaz,
    star_altaz,
)
from skysift.calibration.fisheye import (
    PROJECTIONS,
    FisheyeModel,
    FisheyeSolution,
    fisheye_from_similarity,
    projection_g,
)
from skysift.errors import InputError, NotEnoughStarsError
from skysift.io.frame import Site

__all__ = ["solve_fisheye", "refine_fisheye", "match_stars"]


def match_stars(
    model: FisheyeModel,
    det_xy: np.ndarray,
    cat_alt: np.ndarray,
    cat_az: np.ndarray,
    radius: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual nearest-neighbour matches of catalogue stars and detections.

    Parameters
    ----------
    model : FisheyeModel
    det_xy : ndarray, shape (N, 2)
        Detection positions (x, y) in pixels.
    cat_alt, cat_az : ndarray, shape (M,)
        Catalogue horizontal coordinates in degrees.
    radius : float
        Largest accepted distance in pixels.

    Returns
    -------
    i_det, i_cat : ndarray of int
        Indices of the matched pairs.
    dist : ndarray
        Their distances in pixels.
    """
    if len(det_xy) == 0 or len(cat_alt) == 0:
        e = np.zeros(0, dtype=int)
        return e, e, np.zeros(0)
    px, py = model.altaz_to_pixel(cat_alt, cat_az)
    pred = np.column_stack([np.atleast_1d(px), np.atleast_1d(py)])
    tree_d = cKDTree(det_xy)
    d1, j1 = tree_d.query(pred, k=1, distance_upper_bound=radius)
    ok = np.isfinite(d1)
    i_cat = np.flatnonzero(ok)
    i_det = j1[ok]
    tree_c = cKDTree(pred)
    _, back = tree_c.query(det_xy[i_det], k=1)
    mutual = back == i_cat
    return i_det[mutual], i_cat[mutual], d1[ok][mutual]


def _pack(model: FisheyeModel, names: tuple[str, ...]) -> np.ndarray:
    k = list(model.radial) + [0.0] * 4
    vals = {
        "x0": model.x0,
        "y0": model.y0,
        "rotation": model.rotation,
        "k1": k[0],
        "k3": k[1],
        "k5": k[2],
        "k7": k[3],
        "tilt_e": model.tilt[0],
        "tilt_n": model.tilt[1],
    }
    return np.array([vals[n] for n in names])


def _unpack(p: np.ndarray, names: tuple[str, ...], base: FisheyeModel) -> FisheyeModel:
    vals = dict(zip(names, p, strict=True))
    k = list(base.radial) + [0.0] * 4
    radial = [vals.get(f"k{2 * i + 1}", k[i]) for i in range(4)]
    n_rad = max(
        len(base.radial), 4 if "k7" in vals else 3 if "k5" in vals else 2 if "k3" in vals else 1
    )
    tilt = (vals.get("tilt_e", base.tilt[0]), vals.get("tilt_n", base.tilt[1]))
    return FisheyeModel(
        x0=vals.get("x0", base.x0),
        y0=vals.get("y0", base.y0),
        rotation=vals.get("rotation", base.rotation),
        radial=tuple(radial[:n_rad]) if radial[0] > 0 else (1e-3,) + tuple(radial[1:n_rad]),
        parity=base.parity,
        tilt=tilt,
        shape=base.shape,
        projection=base.projection,
    )


def _fit_model(
    model: FisheyeModel,
    xy: np.ndarray,
    alt: np.ndarray,
    az: np.ndarray,
    names: tuple[str, ...],
    f_scale: float,
) -> FisheyeModel:
    """Robust (soft-L1) least-squares fit of the named parameters."""
    p0 = _pack(model, names)
    # Typical parameter scales for the solver.
    scale = {
        "x0": 10.0,
        "y0": 10.0,
        "rotation": 1.0,
        "k1": 10.0,
        "k3": 10.0,
        "k5": 10.0,
        "k7": 10.0,
    }
    x_scale = np.array([scale.get(n, 1.0) for n in names])

    def resid(p):
        try:
            m = _unpack(p, names, model)
        except InputError:
            return np.full(2 * len(xy), 1e6)
        px, py = m.altaz_to_pixel(alt, az)
        return np.concatenate([np.atleast_1d(px) - xy[:, 0], np.atleast_1d(py) - xy[:, 1]])

    res = least_squares(
        resid, p0, loss="soft_l1", f_scale=max(f_scale, 0.05), x_scale=x_scale, method="trf"
    )
    m = _unpack(res.x, names, model)
    return replace(m, rotation=m.rotation % 360.0)


def _px_scale(model: FisheyeModel) -> float:
    """Size of the fisheye relative to a 1 000 px horizon circle (k1 = 318 px/rad equidistant)."""
    return model.horizon_radius / (318.0 * np.pi / 2)


def _z_reach(alt: np.ndarray) -> float:
    """Zenith angle (deg) the matched stars reach: the 10th-largest, so a few
    stray matches near the horizon do not license high radial orders that
    would then extrapolate wildly where no star constrains them."""
    z = np.sort(90.0 - np.asarray(alt, float))
    return float(z[-min(10, z.size)]) if z.size else 0.0


def _params_for(n: int, z_max_deg: float, fit_tilt: bool, max_terms: int = 4) -> tuple[str, ...]:
    """Free parameters for ``n`` matches reaching ``z_max_deg`` from the zenith.

    The tilt (a first-order effect far from the axis) is freed from 30
    matches; radial terms beyond ``k1`` as the matches and their reach grow,
    at most ``max_terms`` of them (the coarse early iterations keep few, so
    the polynomial cannot absorb a tilt or a wrong centre).
    """
    names: tuple[str, ...] = ("x0", "y0", "rotation", "k1")
    if n >= 12 and z_max_deg > 40 and max_terms >= 2:
        names += ("k3",)
    if n >= 40 and z_max_deg > 60 and max_terms >= 3:
        names += ("k5",)
    if n >= 150 and z_max_deg > 70 and max_terms >= 4:
        names += ("k7",)
    if fit_tilt and n >= 30:
        names += ("tilt_e", "tilt_n")
    return names


def refine_fisheye(
    model: FisheyeModel,
    det_xy: np.ndarray,
    cat_alt: np.ndarray,
    cat_az: np.ndarray,
    cat_mag: np.ndarray,
    *,
    radii: tuple[float, ...] = (30.0, 20.0, 12.0, 8.0, 5.0, 3.5, 2.5),
    mags: tuple[float, ...] | None = None,
    min_alt: float = 3.0,
    fit_tilt: bool = True,
    final_sigma: float = 3.0,
    from_zenith: bool = True,
) -> tuple[FisheyeModel, np.ndarray, np.ndarray]:
    """Iteratively match and refit a fisheye model.

    At each step catalogue stars down to the next magnitude in ``mags`` and
    above ``min_alt`` are matched to the detections (mutual nearest
    neighbours within the next radius in ``radii``) and the model is refitted
    by soft-L1 least squares; parameters are added as matches grow (``k3``
    from 12 matches, ``k5`` from 40, the tilt from 60). A last pass matches
    within ``max(radii[-1], final_sigma * rms)``.

    Parameters
    ----------
    model : FisheyeModel
        Starting model.
    det_xy : ndarray, shape (N, 2)
        Detection positions in pixels.
    cat_alt, cat_az, cat_mag : ndarray, shape (M,)
        Catalogue altitude, azimuth (deg) and magnitude.
    radii : tuple of float, optional
        Match radii in pixels, one per iteration (in units of a scale of
        ``k1 = 318`` px/rad, i.e. a 1 000 px fisheye circle; scaled with the
        model's ``k1``).
    mags : tuple of float, optional
        Catalogue magnitude limit per iteration; default: from 1.5 mag
        brighter than the faintest star, up to the faintest.
    min_alt : float, optional
        Lowest catalogue altitude used, in degrees. Default 3.
    fit_tilt : bool, optional
        Fit the tilt of the optical axis once 60 stars match. Default True.
    final_sigma : float, optional
        Final match radius in units of the residual RMS. Default 3.
    from_zenith : bool, optional
        Match only stars above 40, 30, 20 and 10 deg altitude in the first
        four iterations (where a tilt or a projection error moves them
        least), then the whole sky, and free the radial terms one by one;
        False: the whole sky and every radial term the matches allow from
        the start, the tilt from the third iteration. Default True.

    Returns
    -------
    model : FisheyeModel
    i_det, i_cat : ndarray of int
        Final matched pairs.
    """
    cat_alt = np.asarray(cat_alt, float)
    cat_az = np.asarray(cat_az, float)
    cat_mag = np.asarray(cat_mag, float)
    faint = float(np.nanmax(cat_mag)) if cat_mag.size else 0.0
    if mags is None:
        mags = tuple(np.linspace(faint - 3.0, faint, len(radii)))
    if len(mags) != len(radii):
        msg = f"mags and radii must have the same length, got {len(mags)} and {len(radii)}"
        raise InputError(msg)
    px_scale = _px_scale(model)
    # The final match radius is in pixels and never scales below 2 px.
    steps = [(max(r * px_scale, 2.0), m) for r, m in zip(radii, mags, strict=True)]
    i_det = i_cat = np.zeros(0, dtype=int)
    # Coarse to fine in the field too: the first iterations use stars high in
    # the sky (where a tilt or a projection error moves them least), then
    # reach down to the horizon.
    alt_floor = [max(min_alt, a) for a in (40.0, 30.0, 20.0, 10.0)] if from_zenith else []
    for it, (rad, mag) in enumerate(steps):
        floor = alt_floor[it] if it < len(alt_floor) else min_alt
        sel = np.flatnonzero((cat_mag <= mag) & (cat_alt >= floor))
        n_prev = -1
        # Match and refit at this radius until the matches stop growing (at
        # most 3 times): a model still off by more than the next radius would
        # otherwise lose its far stars and lock in.
        for _ in range(3 if it < 3 else 1):
            i_det, j, dist = match_stars(model, det_xy, cat_alt[sel], cat_az[sel], rad)
            if len(i_det) < 30 and floor > min_alt:  # too few stars high up: the whole sky
                floor = min_alt
                sel = np.flatnonzero((cat_mag <= mag) & (cat_alt >= floor))
                i_det, j, dist = match_stars(model, det_xy, cat_alt[sel], cat_az[sel], rad)
            i_cat = sel[j]
            if len(i_det) < 4:
                return model, i_det, i_cat
            if len(i_det) <= n_prev * 1.02:
                break
            n_prev = len(i_det)
            z_max = _z_reach(cat_alt[i_cat])
            if from_zenith:  # few terms first, the tilt from the start
                names = _params_for(len(i_det), z_max, fit_tilt, max_terms=1 + it // 2)
            else:  # all radial terms the matches allow, the tilt from the third step
                names = _params_for(len(i_det), z_max, fit_tilt and it >= 2)
            model = _fit_model(model, det_xy[i_det], cat_alt[i_cat], cat_az[i_cat], names, rad / 3)
    # Final: match within a radius set by the achieved residuals, then refit.
    sel = np.flatnonzero((cat_mag <= faint) & (cat_alt >= min_alt))
    for _ in range(2):
        i_det, j, dist = match_stars(model, det_xy, cat_alt[sel], cat_az[sel], steps[-1][0])
        if len(i_det) < 4:
            return model, i_det, sel[j]
        rms = float(np.sqrt(np.mean(dist**2)))
        radius = max(steps[-1][0] * 0.6, final_sigma * rms)
        i_det, j, dist = match_stars(model, det_xy, cat_alt[sel], cat_az[sel], radius)
        i_cat = sel[j]
        if len(i_det) < 4:
            return model, i_det, i_cat
        z_max = _z_reach(cat_alt[i_cat])
        names = _params_for(len(i_det), z_max, fit_tilt)
        model = _fit_model(model, det_xy[i_det], cat_alt[i_cat], cat_az[i_cat], names, rms)
    i_det, j, dist = match_stars(model, det_xy, cat_alt[sel], cat_az[sel], radius)
    return model, i_det, sel[j]


def _match_rms(model: FisheyeModel, det_xy, cat_alt, cat_az, i_det, i_cat) -> float:
    px, py = model.altaz_to_pixel(cat_alt[i_cat], cat_az[i_cat])
    d = np.hypot(np.atleast_1d(px) - det_xy[i_det, 0], np.atleast_1d(py) - det_xy[i_det, 1])
    return float(np.sqrt(np.mean(d**2))) if d.size else float("inf")


def _null_matches(
    model: FisheyeModel,
    det_xy: np.ndarray,
    cat_alt: np.ndarray,
    cat_az: np.ndarray,
    radius: float,
) -> float:
    """Chance matches: the same model rotated by 7 angles and mirrored (max count)."""
    counts = []
    for parity in (model.parity, -model.parity):
        for drot in (45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0):
            m = replace(model, rotation=model.rotation + drot, parity=parity)
            counts.append(len(match_stars(m, det_xy, cat_alt, cat_az, radius)[0]))
    return float(np.mean(counts) + 2.0 * np.std(counts))


# ---------------------------------------------------------------------------
# the automatic solve
# ---------------------------------------------------------------------------


def _check_stars(stars: Table) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(stars, Table):
        msg = f"stars must be an astropy Table with columns x, y, flux, got {type(stars).__name__}"
        raise InputError(msg)
    missing = [c for c in ("x", "y", "flux") if c not in stars.colnames]
    if missing:
        msg = f"stars table lacks column(s) {missing}; it needs x, y, flux"
        raise InputError(msg)
    xy = np.column_stack([np.asarray(stars["x"], float), np.asarray(stars["y"], float)])
    flux = np.asarray(stars["flux"], float)
    return xy, flux


def _check_shape(shape: object) -> tuple[int, int]:
    return check_shape(shape, min_size=8)


def _illuminated_region(image: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]] | None:
    """The bright sky region of an all-sky image: mask and its centre and radius.

    Returns ``(mask, (cx, cy, radius))`` with ``mask`` of shape (H, W), ``True``
    = inside the largest bright region (holes filled), or ``None`` when the
    image has no clear bright region.
    """

    img = np.asarray(image, dtype=float)
    if img.ndim == 3:
        img = img.mean(axis=2)
    h, w = img.shape
    f = max(1, int(round(max(h, w) / 256)))
    hh, ww = (h // f) * f, (w // f) * f
    blocks = img[:hh, :ww].reshape(hh // f, f, ww // f, f)
    finite_blocks = np.isfinite(blocks).any(axis=(1, 3))
    small = np.full(finite_blocks.shape, np.nan)
    if finite_blocks.any():
        small[finite_blocks] = np.nanmedian(
            blocks.transpose(0, 2, 1, 3)[finite_blocks].reshape(-1, f * f), axis=1
        )
    finite = np.isfinite(small)
    if finite.sum() < 100:
        return None
    lo, hi = np.percentile(small[finite], [5, 95])
    if not hi > lo:
        return None
    lit = finite & (small > lo + 0.35 * (hi - lo))
    lit = ndimage.binary_opening(lit, iterations=2)
    lab, n = ndimage.label(lit)
    if n == 0:
        return None
    sizes = ndimage.sum(lit, lab, index=np.arange(1, n + 1))
    big = lab == (int(np.argmax(sizes)) + 1)
    big = ndimage.binary_fill_holes(big)
    area = float(big.sum())
    if area < 0.05 * big.size:
        return None
    yy, xx = np.nonzero(big)
    cx = (xx.mean() + 0.5) * f - 0.5
    cy = (yy.mean() + 0.5) * f - 0.5
    radius = math.sqrt(area / math.pi) * f
    # Back to full resolution, grown by ~1 % of the image so stars on the
    # boundary (horizon, tree line) are kept.
    big = ndimage.binary_dilation(big, iterations=max(1, int(round(0.01 * max(h, w) / f))))
    full = np.zeros((h, w), dtype=bool)
    full[:hh, :ww] = np.repeat(np.repeat(big, f, axis=0), f, axis=1)
    return full, (cx, cy, radius)


def _vote(
    det_xy: np.ndarray,
    cat_g: np.ndarray,
    cat_az: np.ndarray,
    centres: np.ndarray,
    scales: np.ndarray,
    tol_frac: float = 0.035,
    n_bins: int = 180,
) -> list[tuple[int, float, float, float, float, int]]:
    """Hough vote over (centre, scale, parity) for the rotation.

    ``cat_g`` is the projection ``g(z)`` of the catalogue stars' zenith
    angles, so that a star lies at ``scale * cat_g`` pixels from the centre.
    Returns hypotheses ``(votes, cx, cy, k1, rotation_deg, parity)``, best first.
    """
    out = []
    az = np.radians(cat_az)
    bin_w = 2 * np.pi / n_bins
    for cx, cy in centres:
        dx = det_xy[:, 0] - cx
        dy = det_xy[:, 1] - cy
        rd = np.hypot(dx, dy)
        phid = np.arctan2(dy, dx)
        # (n_scale, n_det, n_cat)
        rc = scales[:, None, None] * cat_g[None, None, :]
        ok = np.abs(rd[None, :, None] - rc) < tol_frac * scales[:, None, None] + 2.0
        ok &= rd[None, :, None] > 0.05 * scales[:, None, None]
        si, di, ci = np.nonzero(ok)
        for parity in (1, -1):
            theta = (phid[di] - parity * az[ci]) % (2 * np.pi)
            b = np.minimum((theta / bin_w).astype(int), n_bins - 1)
            hist = np.bincount(si * n_bins + b, minlength=len(scales) * n_bins).reshape(
                len(scales), n_bins
            )
            # Smooth over neighbouring bins (circularly): a vote spread over two bins.
            sm = hist + np.roll(hist, 1, axis=1)
            s_best, b_best = np.unravel_index(int(np.argmax(sm)), sm.shape)
            votes = int(sm[s_best, b_best])
            rot = math.degrees((b_best) * bin_w) % 360.0
            out.append((votes, float(cx), float(cy), float(scales[s_best]), rot, parity))
    out.sort(key=lambda t: -t[0])
    return out


def _catalog_in_view(site: Site, time: Time, max_mag: float) -> Table:
    cat = load_hipparcos(max_mag, epoch=time)
    cat = star_altaz(cat, site, time)
    return cat[cat["alt"] > 0.0]


def solve_fisheye(
    stars: Table,
    site: Site,
    time: Time,
    shape: tuple[int, int],
    *,
    max_mag: float = 6.5,
    initial: FisheyeModel | None = None,
    image: np.ndarray | None = None,
    min_alt: float = 3.0,
    n_bright: int = 80,
    min_matches: int = 15,
    max_rms: float = 2.0,
    fit_tilt: bool = True,
) -> FisheyeSolution:
    """Calibrate an all-sky camera automatically from its stars, site and time.

    Parameters
    ----------
    stars : astropy.table.Table
        Detections with at least columns ``x``, ``y`` (0-based pixels) and
        ``flux`` (any positive unit), in any order (e.g. from
        :func:`skysift.detection.stars.detect_stars`). Detections should
        exclude non-sky regions when possible; the matching is robust to a
        fair number of spurious ones.
    site : Site
        Observing site.
    time : astropy.time.Time
        Time of the exposure (mid-exposure is best), UTC.
    shape : tuple of int
        Image shape ``(H, W)`` in pixels.
    max_mag : float, optional
        Faintest catalogue V magnitude matched. Default 6.5.
    initial : FisheyeModel, optional
        A starting model (e.g. yesterday's calibration); skips the blind search.
    image : ndarray, shape (H, W), optional
        The image; when given, the centre and radius of its bright sky region
        seed the search (otherwise the image centre and a range of scales),
        and detections outside that region (grown by 1 % of the image size:
        hot pixels in the dark surround, caption text on black) are ignored.
    min_alt : float, optional
        Lowest altitude of catalogue stars used, in degrees. Default 3.
    n_bright : int, optional
        Number of brightest detections used in the blind search. Default 80.
    min_matches : int, optional
        Fewest identified stars for an accepted solution. Default 15.
    max_rms : float, optional
        Largest accepted residual RMS in pixels. Default 2.
    fit_tilt : bool, optional
        Fit a tilt of the optical axis (when 60 or more stars match).
        Default True.

    Returns
    -------
    FisheyeSolution

    Raises
    ------
    InputError
        If the table lacks columns, or the site, time or shape are unusable.
    NotEnoughStarsError
        If no convincing solution is found: fewer than ``min_matches``
        identified stars, matches not far above the chance level (the null
        test of the module docstring: at least 3 times the chance count plus
        10), or an RMS above ``max_rms``. The message gives the numbers.
    """
    det_xy_all, flux_all = _check_stars(stars)
    h, w = _check_shape(shape)
    if not isinstance(site, Site):
        msg = f"site must be a skysift Site, got {type(site).__name__}"
        raise InputError(msg)
    good = (
        np.all(np.isfinite(det_xy_all), axis=1)
        & np.isfinite(flux_all)
        & (flux_all > 0)
        & (det_xy_all[:, 0] >= -0.5)
        & (det_xy_all[:, 0] <= w - 0.5)
        & (det_xy_all[:, 1] >= -0.5)
        & (det_xy_all[:, 1] <= h - 0.5)
    )
    good_all = good.copy()
    region = None
    if image is not None:
        image = np.asarray(image)
        if image.shape[:2] != (h, w):
            msg = f"image shape {image.shape[:2]} differs from shape {(h, w)}"
            raise InputError(msg)
        region = _illuminated_region(image)
        if region is not None:
            ix = np.clip(np.round(det_xy_all[:, 0]), 0, w - 1).astype(int)
            iy = np.clip(np.round(det_xy_all[:, 1]), 0, h - 1).astype(int)
            good &= region[0][iy, ix]
    # The bright-region filter drops hot pixels and lit ground outside the
    # lens circle; when it drops most detections (a lens circle cut by the
    # frame, sky-lit ground), the search also runs on every detection.
    subsets = [np.flatnonzero(good)]
    if region is not None and subsets[0].size < 0.6 * np.count_nonzero(good_all):
        subsets.append(np.flatnonzero(good_all))
    if subsets[-1].size < max(4, min_matches):
        msg = (
            f"not enough stars to calibrate: {subsets[-1].size} usable detections, "
            f"need {max(4, min_matches)}"
        )
        raise NotEnoughStarsError(msg)
    if initial is not None and not isinstance(initial, FisheyeModel):
        msg = f"initial must be a FisheyeModel, got {type(initial).__name__}"
        raise InputError(msg)

    cat = _catalog_in_view(site, time, max_mag)
    planets = planet_altaz(site, time)
    planets = planets[planets["alt"] > 0]
    cat_alt = np.asarray(cat["alt"], float)
    cat_az = np.asarray(cat["az"], float)
    cat_mag = np.asarray(cat["v_mag"], float)

    best = None
    for idx in subsets:
        if idx.size < max(4, min_matches):
            continue
        circle = region[1] if region is not None else None
        if initial is not None:
            candidates = [initial]
        else:
            candidates = _blind_hypotheses(
                det_xy_all[idx], flux_all[idx], cat, (h, w), circle, n_bright
            )
        # The coarse-to-fine schedule from high stars first; if no candidate
        # then matches 3/4 of the detections, the same candidates again with
        # the whole sky from the start, then the candidates polished on a
        # finer grid of centre, scale and rotation (each pass rescues cases
        # the others lose on the stress grid).
        passes = [(True, candidates), (False, candidates)]
        if initial is None:
            passes.append((True, None))
        for from_zenith, cands in passes:
            if cands is None:
                cands = _blind_hypotheses(
                    det_xy_all[idx], flux_all[idx], cat, (h, w), circle, n_bright, polish=True
                )
            for cand in cands:
                model, i_det, i_cat = refine_fisheye(
                    replace(cand, shape=(h, w)),
                    det_xy_all[idx],
                    cat_alt,
                    cat_az,
                    cat_mag,
                    min_alt=min_alt,
                    fit_tilt=fit_tilt,
                    from_zenith=from_zenith,
                )
                if best is None or len(i_det) > len(best[1]):
                    best = (model, i_det, i_cat, idx)
            if len(best[1]) >= 0.75 * idx.size:
                break
    model, i_det, i_cat, idx_good = best  # type: ignore[misc]
    det_xy = det_xy_all[idx_good]
    flux = flux_all[idx_good]

    # Drop detections of planets (not in the catalogue) from the matches.
    if len(planets) and len(i_det):
        ppx, ppy = model.altaz_to_pixel(np.asarray(planets["alt"]), np.asarray(planets["az"]))
        pp = np.column_stack([np.atleast_1d(ppx), np.atleast_1d(ppy)])
        d = np.min(np.hypot(*(det_xy[i_det, None, :] - pp[None, :, :]).transpose(2, 0, 1)), axis=1)
        keep = d > 4.0 * _px_scale(model) + 3.0
        i_det, i_cat = i_det[keep], i_cat[keep]

    n = len(i_det)
    px, py = model.altaz_to_pixel(cat_alt[i_cat], cat_az[i_cat])
    resid = np.hypot(np.atleast_1d(px) - det_xy[i_det, 0], np.atleast_1d(py) - det_xy[i_det, 1])
    rms = float(np.sqrt(np.mean(resid**2))) if n else float("nan")
    sel = (cat_mag <= max_mag) & (cat_alt >= min_alt)
    radius = float(resid.max()) if n else 3.0
    n_chance = _null_matches(model, det_xy, cat_alt[sel], cat_az[sel], radius)
    need = int(max(min_matches, math.ceil(3.0 * n_chance + 10)))
    if n < need or not (rms <= max_rms):
        msg = (
            f"not enough stars to calibrate: {n} matched, need {need} "
            f"(chance level {n_chance:.1f}, RMS {rms:.2f} px, limit {max_rms:g} px)"
        )
        raise NotEnoughStarsError(msg)
    matches = _matches_table(cat[i_cat], idx_good[i_det], det_xy[i_det], resid, flux[i_det])
    return FisheyeSolution(
        model=model,
        matches=matches,
        rms_px=rms,
        n_matched=n,
        n_chance=n_chance,
        site=site,
        time=time,
    )


def _matches_table(
    cat_rows: Table,
    star_index: np.ndarray,
    xy: np.ndarray,
    resid: np.ndarray,
    flux: np.ndarray | None,
) -> Table:
    t = Table()
    t["star_index"] = np.asarray(star_index, dtype=np.int64)
    t["x"] = np.asarray(xy[:, 0], float) if len(xy) else np.zeros(0)
    t["y"] = np.asarray(xy[:, 1], float) if len(xy) else np.zeros(0)
    t["x"].unit = t["y"].unit = "pix"
    t["catalog_id"] = np.asarray(cat_rows["catalog_id"], dtype=str)
    t["hip"] = np.asarray(cat_rows["hip"], dtype=np.int64)
    for c in ("ra", "dec", "alt", "az"):
        t[c] = np.asarray(cat_rows[c], float)
        t[c].unit = "deg"
    t["catalog_mag"] = np.asarray(cat_rows["v_mag"], float)
    t["b_v"] = np.asarray(cat_rows["b_v"], float)
    t["catalog_mag"].unit = t["b_v"].unit = "mag"
    t["airmass"] = np.asarray(cat_rows["airmass"], float)
    t["residual_px"] = np.asarray(resid, float)
    t["residual_px"].unit = "pix"
    if flux is not None:
        t["flux"] = np.asarray(flux, float)
    return t


def _blind_hypotheses(
    det_xy: np.ndarray,
    flux: np.ndarray,
    cat: Table,
    shape: tuple[int, int],
    circle: tuple[float, float, float] | None,
    n_bright: int,
    n_keep: int = 4,
    n_vote: int = 30,
    projections: tuple[str, ...] = PROJECTIONS,
    polish: bool = False,
) -> list[FisheyeModel]:
    """Starting models from a Hough vote of bright detections on bright stars.

    The vote runs once per standard projection (``g(z)`` of
    :mod:`skysift.calibration.fisheye`); the hypotheses of all projections
    are scored together by a direct match count, and the best ``n_keep``
    (plus the best of each projection not among them) are returned; with
    ``polish``, those of them that :func:`_polish_centre` moves, polished.
    """
    h, w = shape
    if circle is not None:
        cx0, cy0, rad = circle
        # The horizon lies near (usually a little outside) the bright circle.
        r_lo, r_hi = 0.8 * rad, 1.6 * rad
    else:
        cx0, cy0 = (w - 1) / 2.0, (h - 1) / 2.0
        r_lo, r_hi = 0.25 * min(h, w), 0.65 * max(h, w)
    n_scale = int(math.ceil(math.log(r_hi / r_lo) / 0.03)) + 1
    horizon = np.geomspace(r_lo, r_hi, n_scale)
    span = 0.08 * min(h, w)
    step = max(4.0, 0.015 * min(h, w))
    offs = np.arange(-span, span + 0.5 * step, step)
    centres = np.array([(cx0 + dx, cy0 + dy) for dx in offs for dy in offs])

    order = np.argsort(-flux)[:n_bright]
    bright_xy = det_xy[order]
    alt = np.asarray(cat["alt"], float)
    sel = np.flatnonzero(alt > 12.0)[: int(1.5 * n_bright)]
    cat_z = np.radians(90.0 - alt[sel])
    cat_az = np.asarray(cat["az"], float)[sel]
    models: list[FisheyeModel] = []
    for proj in projections:
        scales = horizon / float(projection_g(proj, np.pi / 2))
        hyps = _vote(bright_xy, projection_g(proj, cat_z), cat_az, centres, scales)
        kept: list[FisheyeModel] = []
        for votes, cx, cy, k1, rot, parity in hyps:
            if len(kept) >= n_vote:
                break
            # skip near-duplicates of an accepted hypothesis
            dup = any(
                m.parity == parity
                and abs(m.x0 - cx) < 3 * step
                and abs(m.y0 - cy) < 3 * step
                and abs(((m.rotation - rot + 180) % 360) - 180) < 6
                for m in kept
            )
            if dup or votes < 4:
                continue
            kept.append(
                FisheyeModel(cx, cy, rot, (k1,), parity=parity, shape=shape, projection=proj)
            )
        models.extend(kept)
    # Second stage: score each hypothesis by a direct match count of the
    # brighter half of the detections against stars to V = 5, with one
    # similarity refit, and keep the best few for the full refinement.
    calt = alt
    caz = np.asarray(cat["az"], float)
    cmag = np.asarray(cat["v_mag"], float)
    sel2 = np.flatnonzero((calt > 8.0) & (cmag <= 5.0))
    half = det_xy[np.argsort(-flux)[: max(4 * n_bright, len(det_xy) // 2)]]
    scored = []
    for m in models:
        radius = 0.03 * m.horizon_radius
        i, j, _ = match_stars(m, half, calt[sel2], caz[sel2], radius)
        if len(i) >= 4:
            m2, _ = fisheye_from_similarity(
                half[i, 0],
                half[i, 1],
                calt[sel2][j],
                caz[sel2][j],
                shape=shape,
                projection=m.projection,
            )
            if m2.parity == m.parity and 0.7 < m2.radial[0] / m.radial[0] < 1.4:
                i2, _, _ = match_stars(m2, half, calt[sel2], caz[sel2], 0.6 * radius)
                if len(i2) >= len(i):
                    m, i = m2, i2
        scored.append((len(i), m))
    scored.sort(key=lambda t: -t[0])
    best = [m for _, m in scored[:n_keep]]
    for proj in projections:  # the best hypothesis of every projection gets its chance
        if not any(m.projection == proj for m in best):
            best.extend([m for _, m in scored if m.projection == proj][:1])
    if not polish:
        return best
    polished = [_polish_centre(m, half, calt[sel2], caz[sel2], step) for m in best]
    # only those the polish moved: the others were refined already
    return [
        p
        for p, m in zip(polished, best, strict=True)
        if np.hypot(p.x0 - m.x0, p.y0 - m.y0) > 0.2 * step
        or abs(p.radial[0] - m.radial[0]) > 0.01 * m.radial[0]
    ]


def _polish_centre(
    model: FisheyeModel,
    det_xy: np.ndarray,
    cat_alt: np.ndarray,
    cat_az: np.ndarray,
    step: float,
) -> FisheyeModel:
    """The hypothesis moved on small grids of centre, scale and rotation to match most stars.

    The vote's centre grid is ``step`` pixels coarse and the refinement
    converges only from about 10 px; a tilted axis or an unmodelled radial
    term can leave the similarity refit 15-30 px and a few per cent off.
    Coordinate search, scored by the matches within 2 % of the horizon
    radius: a 5 x 5 grid of centres spanning ±``step``, then scales of ±4 %
    and rotations of ±3 deg; twice, the second time at half the spacing.
    """
    radius = 0.02 * model.horizon_radius
    best, n_best = model, len(match_stars(model, det_xy, cat_alt, cat_az, radius)[0])
    for frac in (1.0, 0.5):
        base = best
        for dx in np.arange(-2, 3) * 0.5 * step * frac:
            for dy in np.arange(-2, 3) * 0.5 * step * frac:
                m = replace(base, x0=base.x0 + dx, y0=base.y0 + dy)
                n = len(match_stars(m, det_xy, cat_alt, cat_az, radius)[0])
                if n > n_best:
                    best, n_best = m, n
        base = best
        for ds in np.array([-0.04, -0.02, 0.0, 0.02, 0.04]) * frac:
            for dr in np.array([-3.0, -1.5, 0.0, 1.5, 3.0]) * frac:
                radial = (base.radial[0] * (1.0 + ds), *base.radial[1:])
                m = replace(base, radial=radial, rotation=base.rotation + dr)
                n = len(match_stars(m, det_xy, cat_alt, cat_az, radius)[0])
                if n > n_best:
                    best, n_best = m, n
    return best
