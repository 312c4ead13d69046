"""Validation of the visibility verdict by injecting objects of known SNR on real backgrounds.

Each trial cuts a square from a real star-field image, picks a position, a
Sérsic profile (index, half-light radius ``r_e``, ellipticity, angle;
:func:`skysift.simulation.sources.render_sersic`) and a target SNR (or no
object at all), and

1. measures the noise of the catalogue ellipse (semi-axes ``2 r_e`` and
   ``2 q r_e``, the truth mask of :func:`skysift.simulation.sources.render_galaxy`)
   at that place *before* injection: ``sigma_sum`` of
   :func:`skysift.dso.visibility.measure_visibility`;
2. scales the profile so that its flux inside the ellipse is ``SNR x
   sigma_sum`` (the *injected SNR*), adds it and measures again;
3. compares the verdict with the verdict of the injected SNR.

A fraction of the trials (``large_fraction``) inject objects **larger than
the cut**: half-light radius 0.35-0.8 times the cut's side, so that the
catalogue ellipse (semi-major axis ``2 r_e``) reaches past the frame and
its annulus lies outside it; these are measured over the frame's sky floor
(:func:`skysift.dso.visibility.frame_floor`), like the Rosette Nebula in a
Seestar frame. A smooth glow larger than the frame cannot be told from the
sky: only the object's light above its own faintest level in the cut is
measurable, and the injected SNR of these trials is that part's.

The mean surface brightness inside the ellipse is given relative to the
background noise: ``sb_rel = -2.5 log10(mean excess per pixel / sigma_pix)``
mag (0 = one sigma per pixel; fainter objects have larger values), as the
JPEG stacks carry no photometric zero point.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from scipy import ndimage

from skysift.dso.visibility import (
    SNR_MARGINAL,
    SNR_VISIBLE,
    measure_visibility,
    noise_correlation_area,
    remove_stars,
    verdict,
)
from skysift.errors import InputError
from skysift.simulation.sources import render_sersic

__all__ = ["inject_and_measure", "summarise_injections", "nebula_texture"]


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def inject_and_measure(
    backgrounds: list[np.ndarray],
    *,
    n_trials: int = 200,
    size: int = 256,
    snr_range: tuple[float, float] = (0.5, 40.0),
    r_e_range: tuple[float, float] = (3.0, 14.0),
    absent_fraction: float = 0.2,
    large_fraction: float = 0.0,
    large_backgrounds: list[int] | None = None,
    rng: np.random.Generator | int | None = None,
) -> Table:
    """Inject Sérsic objects of known SNR into real backgrounds and measure them.

    Parameters
    ----------
    backgrounds : list of ndarray, shape (H, W)
        Real star-field luminance images, each at least ``size`` square,
        without a catalogued object where cut.
    n_trials : int, optional
        Number of injections (and empty trials). Default 200.
    size : int, optional
        Side of the square cut for each trial, pixels. Default 256.
    snr_range : (float, float), optional
        Injected SNR drawn log-uniformly in this range. Default (0.5, 40).
    r_e_range : (float, float), optional
        Half-light radius drawn uniformly, pixels. Default (3, 14).
    absent_fraction : float, optional
        Fraction of trials with nothing injected (injected SNR 0). Default 0.2.
    large_fraction : float, optional
        Fraction of trials with an object larger than the cut (half-light
        radius 0.35-0.8 ``size``, Sérsic n 0.5 or 1, centre anywhere in the
        cut), half of them a structured nebula instead (:func:`nebula_texture`;
        ``n`` = 0 in the table). Default 0.
    large_backgrounds : list of int, optional
        Indices of the ``backgrounds`` used for the larger-than-the-cut
        trials (default: all): backgrounds inside a large nebula of their own
        (a Seestar frame of the Rosette) hold a real frame-filling object,
        so an "empty" large trial there is not empty.
    rng : numpy.random.Generator, int or None

    Returns
    -------
    astropy.table.Table
        One row per trial: ``background`` (index), ``x0``, ``y0`` (corner of
        the cut in the background), ``x``, ``y`` (in the cut), ``r_e``,
        ``n``, ``ellipticity``, ``injected_snr``, ``sb_rel`` (mag, relative
        to 1 sigma per pixel; NaN when absent), ``measured_snr``,
        ``err_before``, ``err_after`` (noise of the sum before and after
        injection),
        ``true_verdict``, ``verdict``, ``large`` (object larger than the cut).

    Raises
    ------
    InputError
        If no background is big enough, a range is invalid or a fraction is
        outside [0, 1].
    """

    gen = _rng(rng)
    bgs = [np.asarray(b, np.float32) for b in backgrounds if min(np.shape(b)) >= size]
    if not bgs:
        msg = f"need at least one 2-D background of at least {size} x {size} pixels"
        raise InputError(msg)
    if not (0 < snr_range[0] < snr_range[1]) or not (0 < r_e_range[0] <= r_e_range[1]):
        msg = (
            f"snr_range and r_e_range must be increasing and positive, got {snr_range}, {r_e_range}"
        )
        raise InputError(msg)
    for name, frac in (("absent_fraction", absent_fraction), ("large_fraction", large_fraction)):
        if not 0.0 <= frac <= 1.0:
            msg = f"{name} must be in [0, 1], got {frac}"
            raise InputError(msg)
    rows = []
    usable = [i for i, b in enumerate(backgrounds) if min(np.shape(b)) >= size]
    large_pool = [usable.index(i) for i in (large_backgrounds or usable) if i in usable]
    if large_fraction > 0 and not large_pool:
        msg = f"large_backgrounds {large_backgrounds} names no background of at least {size} px"
        raise InputError(msg)
    for _ in range(int(n_trials)):
        # no extra draw without large trials: the same seed gives the same small trials
        large = large_fraction > 0 and bool(gen.random() < large_fraction)
        k = int(gen.choice(large_pool)) if large else int(gen.integers(len(bgs)))
        img = bgs[k]
        y0 = int(gen.integers(0, img.shape[0] - size + 1))
        x0 = int(gen.integers(0, img.shape[1] - size + 1))
        cut = np.array(img[y0 : y0 + size, x0 : x0 + size], dtype=np.float32)
        nebula = large and bool(gen.random() < 0.5)
        if large:
            r_e = float(gen.uniform(0.35, 0.8) * size)
            n = 0.0 if nebula else float(gen.choice([0.5, 1.0]))
        else:
            r_e = float(gen.uniform(*r_e_range))
            n = float(gen.choice([0.5, 1.0, 2.0]))
        ell = float(gen.uniform(0.0, 0.5))
        pa = float(gen.uniform(0, 180))
        if large:
            cx, cy = gen.uniform(0.2, 0.8, 2) * (size - 1)
        else:
            cx, cy = (size - 1) / 2 + gen.uniform(-10, 10, 2)
        a, b = 2 * r_e, 2 * (1 - ell) * r_e
        obj = Table({"x": [cx], "y": [cy], "major_px": [2 * a], "minor_px": [2 * b],
                     "theta_deg": [pa], "type": ["G"]})  # fmt: skip
        before = measure_visibility(cut, obj)
        err0 = float(before["excess_err"][0])
        absent = gen.random() < absent_fraction
        snr_true = 0.0 if absent else float(np.exp(gen.uniform(*np.log(snr_range))))
        sb_rel = np.nan
        if not absent:
            if nebula:
                prof = nebula_texture((size, size), gen)
            else:
                prof = render_sersic((size, size), cx, cy, 1.0, n, r_e, ellipticity=ell, pa=pa,
                                     oversample=3, backend="numpy", psf=2.0)  # fmt: skip
            yy, xx = np.mgrid[0:size, 0:size]
            t = np.radians(pa)
            u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
            v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
            inside = (u / max(a, 3.0)) ** 2 + (v / max(b, 3.0)) ** 2 <= 1
            # larger than the cut: only the light above a plane through its faintest parts
            # can be told from a sky with a gradient; that part is what is injected
            f_in = float((prof - (_lower_plane(prof) if large else 0.0))[inside].sum())
            amp = snr_true * err0 / f_in
            cut = cut + (amp * prof).astype(np.float32)
            mean_pix = amp * f_in / inside.sum()
            sigma_pix = _sigma_pix(bgs[k][y0 : y0 + size, x0 : x0 + size])
            sb_rel = float(-2.5 * np.log10(mean_pix / sigma_pix)) if sigma_pix > 0 else np.nan
        after = measure_visibility(cut, obj)
        snr_meas = float(after["snr"][0])
        rows.append((k, x0, y0, cx, cy, r_e, n, ell, snr_true, sb_rel, snr_meas, err0,
                     float(after["excess_err"][0]), verdict(snr_true), verdict(snr_meas),
                     large))  # fmt: skip
    names = ("background", "x0", "y0", "x", "y", "r_e", "n", "ellipticity", "injected_snr",
             "sb_rel", "measured_snr", "err_before", "err_after", "true_verdict", "verdict",
             "large")  # fmt: skip
    return Table(rows=rows, names=names)


def nebula_texture(
    shape: tuple[int, int], rng: np.random.Generator | int | None = None, *, scale: float = 0.08
) -> np.ndarray:
    """A structured, frame-filling emission nebula: wisps and dark lanes, positive everywhere.

    ``exp(g)`` of a Gaussian random field ``g`` smoothed with a Gaussian of
    ``scale`` times the shorter side (unit variance before the exponential):
    a log-normal texture, like the mottled H-alpha emission of the Rosette
    across a Seestar frame.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)``, pixels.
    rng : numpy.random.Generator, int or None
    scale : float, optional
        Smoothing, fraction of the shorter side. Default 0.08.

    Returns
    -------
    ndarray, shape (H, W), float64, normalised to sum 1
    """
    g = ndimage.gaussian_filter(_rng(rng).normal(0.0, 1.0, shape), scale * min(shape))
    g /= max(float(g.std()), 1e-12)
    tex = np.exp(g)
    return tex / tex.sum()


def _lower_plane(prof: np.ndarray) -> np.ndarray:
    """The plane through the faintest 20 % of a noise-free profile (its part a sky could be)."""
    h, w = prof.shape
    yy, xx = np.mgrid[0:h:4, 0:w:4]
    v = prof[::4, ::4].ravel().astype(float)
    design = np.column_stack([np.ones(v.size), xx.ravel(), yy.ravel()])
    low = np.ones(v.size, bool)
    for _ in range(8):
        coef, *_ = np.linalg.lstsq(design[low], v[low], rcond=None)
        r = v - design @ coef
        low = r <= np.quantile(r, 0.2)
    coef[0] += float(np.mean(r[low]))
    y, x = np.mgrid[0:h, 0:w]
    return coef[0] + coef[1] * x + coef[2] * y


def _sigma_pix(cut: np.ndarray) -> float:

    starless, _ = remove_stars(cut)
    return noise_correlation_area(starless)[0]


def summarise_injections(
    trials: Table,
    *,
    margin: float = 2.0,
    sb_bins: tuple[float, ...] = (-6.0, -4.0, -3.0, -2.0, -1.0, 0.0, 2.0),
) -> tuple[dict[str, float], Table]:
    """Agreement of verdicts away from the marginal band, and per-SB-bin rates.

    Parameters
    ----------
    trials : astropy.table.Table
        From :func:`inject_and_measure`.
    margin : float, optional
        Trials with injected SNR within ``margin`` of the band edges (3 and 5)
        are "near the band" and left out of the agreement. Default 2
        (agreement counted for injected SNR < 1 and >= 7).
    sb_bins : tuple of float, optional
        Edges of the ``sb_rel`` bins, mag.

    Returns
    -------
    summary : dict
        ``n_trials``, ``n_away``, ``agreement_away`` (fraction), ``agreement_all``,
        ``false_visible_rate_absent`` (absent trials judged visible).
    per_bin : astropy.table.Table
        ``sb_lo``, ``sb_hi``, ``n``, ``median_injected_snr``, ``completeness``
        (judged visible among those whose injected SNR >= 5),
        ``false_visible_rate`` (judged visible among those with injected SNR < 3).
    """

    snr = np.asarray(trials["injected_snr"], float)
    agree = np.asarray(trials["verdict"]) == np.asarray(trials["true_verdict"])
    away = (snr < SNR_MARGINAL - margin) | (snr >= SNR_VISIBLE + margin)
    absent = snr == 0
    vis = np.asarray(trials["verdict"]) == "visible"
    summary = {
        "n_trials": len(trials),
        "n_away": int(away.sum()),
        "agreement_away": float(agree[away].mean()) if away.any() else float("nan"),
        "agreement_all": float(agree.mean()) if len(agree) else float("nan"),
        "n_absent": int(absent.sum()),
        "false_visible_rate_absent": float(vis[absent].mean()) if absent.any() else float("nan"),
    }
    sb = np.asarray(trials["sb_rel"], float)
    rows = []
    for lo, hi in zip(sb_bins[:-1], sb_bins[1:], strict=True):
        sel = (sb >= lo) & (sb < hi)
        pos = sel & (snr >= SNR_VISIBLE)
        neg = sel & (snr < SNR_MARGINAL)
        rows.append((lo, hi, int(sel.sum()),
                     float(np.median(snr[sel])) if sel.any() else np.nan,
                     float(vis[pos].mean()) if pos.any() else np.nan,
                     float(vis[neg].mean()) if neg.any() else np.nan))  # fmt: skip
    per_bin = Table(rows=rows, names=("sb_lo", "sb_hi", "n", "median_injected_snr",
                                      "completeness", "false_visible_rate"))  # fmt: skip
    return summary, per_bin
