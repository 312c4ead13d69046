"""Head photometry of a bolide seen through a GMN/RMS FF file: the PSF wings lost to the neighbours.

An FF file keeps, per pixel, only the frame of its largest value
(:mod:`skysift.io.gmn`). A moving meteor's smear in frame ``k`` overlaps the
smears of frames ``k - 1`` and ``k + 1`` by the width of the PSF, and each
overlapping pixel is kept by one frame only: frame ``k`` rebuilt from the
``maxpixel`` / ``maxframe`` planes lacks the wings its neighbours took, and
``avepixel`` (the rebuilt frames' background) holds ``1 / (N - 1)`` of the
meteor's light of every other frame. Aperture sums on the rebuilt frames are
therefore too faint (0.07-0.10 mag for a 13 px/frame smear with a 2.8 px
FWHM).

:func:`ff_head_photometry` corrects for both with a forward model of the FF
planes: the meteor in frame ``k`` is a uniform segment of the path (from the
head's position at the start of the exposure to its position at the end),
convolved with a Gaussian PSF, with flux ``A_k``. The segment ends come from
the ``maxframe`` plane itself (the median position along the path of the
pixels each frame holds, fitted by a low-order polynomial in the frame
number). A pixel kept by frame ``o`` holds

``maxpixel - avepixel = A_o m_o(p) - sum_{j != o} A_j m_j(p) / (N - 1)``

(``m_k`` the unit-flux model image of frame ``k``), linear in the fluxes: a
first estimate fits all frames at once by non-negative least squares over
the pixels the model gives clearly to the frame that holds them (and the
FWHM, from the pipeline's value, to the bright ones). The flux reported is
then the one whose *simulated* FF compression (the model frames with the
noise measured from the planes, rounded to integers, compressed as RMS does)
gives the same sum over the frame's own pixels near its smear as the data:
the photometry of the GMN (Vida et al. 2021, MNRAS 506, 5046, section 2: the
sum of the frame's meteor pixels in frames rebuilt from the FF planes), with
what such a sum misses (the wings taken by the neighbours, the light in
``avepixel``) and gains (noise maxima) taken from the model, not the data.

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel, x = column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table
from scipy.optimize import minimize_scalar, nnls
from scipy.special import ndtr

from skysift.errors import InputError
from skysift.io.frame import FrameSequence
from skysift.io.gmn import FFFile

__all__ = ["ff_clip_photometry", "ff_head_photometry", "ff_segment_ends", "ff_smear_model"]

#: A pixel enters the fit where the model gives its frame this many sigma, and that many more
#: than any other frame.
_SURE = 3.0
#: The FWHM is fitted on pixels where the frame's model light is above this many sigma.
_STRONG = 10.0
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def ff_smear_model(s: np.ndarray, d: np.ndarray, ends: np.ndarray, fwhm: float) -> np.ndarray:
    """Unit-flux images of uniform smears along a path, convolved with a Gaussian PSF.

    Parameters
    ----------
    s, d : ndarray, shape (P,)
        Position of each pixel along the path and its signed distance from
        it, px (``trajectory.project(x, y)``).
    ends : ndarray, shape (K + 1,)
        Along-path positions of the segment ends, px: segment ``k`` runs
        from ``ends[k]`` to ``ends[k + 1]`` (increasing).
    fwhm : float
        PSF FWHM, px. The pixel's own width is added in quadrature
        (``sigma**2 + 1/12``).

    Returns
    -------
    ndarray, shape (P, K)
        Column ``k``: the fraction of segment ``k``'s light that falls in each
        pixel (sums to 1 over the plane, up to the sampling).

    Raises
    ------
    InputError
        If ``fwhm`` is not positive or ``ends`` is not increasing with at
        least two values.
    """
    ends = np.asarray(ends, float)
    if not (np.isfinite(fwhm) and fwhm > 0):
        msg = f"fwhm must be a positive number of pixels, got {fwhm!r}"
        raise InputError(msg)
    if ends.ndim != 1 or len(ends) < 2 or not np.all(np.diff(ends) > 0):
        msg = f"ends must be an increasing 1-D array of >= 2 positions, got {ends!r}"
        raise InputError(msg)
    sig = float(np.sqrt((fwhm * _FWHM_TO_SIGMA) ** 2 + 1.0 / 12.0))
    s = np.asarray(s, float)[:, None]
    d = np.asarray(d, float)[:, None]
    across = np.exp(-0.5 * (d / sig) ** 2) / (np.sqrt(2.0 * np.pi) * sig)
    cdf = ndtr((ends[None, :] - s) / sig)
    along = (cdf[:, 1:] - cdf[:, :-1]) / np.diff(ends)[None, :]
    return across * along


def ff_segment_ends(
    ff: FFFile,
    trajectory: Any,
    frames: np.ndarray,
    *,
    noise: float,
    fwhm: float,
    bbox: tuple[int, int, int, int],
) -> np.ndarray:
    """Along-path positions of the ends of each frame's smear, from the ``maxframe`` plane.

    Near the path, frame ``k`` holds the pixels between its smear's ends
    (where its light exceeds its neighbours'): the median along-path position
    of those pixels is the middle of the smear. A polynomial in the frame
    number (linear, quadratic from 6 frames: the meteor may decelerate),
    fitted with one rejection pass, gives the middle of every frame;
    the ends lie halfway between consecutive middles.

    Parameters
    ----------
    ff : FFFile
    trajectory : Trajectory or GreatCircleTrajectory
        The path (``project(x, y) -> (s, d)``).
    frames : ndarray of int, shape (K,)
        The FF frames (consecutive) whose smears are wanted.
    noise : float
        Noise sigma per pixel of one frame, ADU.
    fwhm : float
        PSF FWHM, px.
    bbox : (y0, y1, x0, x1)
        The part of the image to look at.

    Returns
    -------
    ndarray, shape (K + 1,)
        Increasing segment ends, px along the path.

    Raises
    ------
    InputError
        If fewer than 2 frames hold pixels of the meteor near the path, or the
        meteor does not move along it.
    """
    y0, y1, x0, x1 = bbox
    yy, xx = np.mgrid[y0:y1, x0:x1]
    s, d = trajectory.project(xx.ravel(), yy.ravel())
    owner = ff.maxframe[y0:y1, x0:x1].ravel().astype(int)
    excess = ff.maxpixel[y0:y1, x0:x1].ravel().astype(float) - ff.avepixel[y0:y1, x0:x1].ravel()
    core = (np.abs(d) <= max(1.0, 0.5 * fwhm)) & (excess > 3.0 * noise)
    ks, mids, counts = [], [], []
    for k in range(int(frames.min()), int(frames.max()) + 1):
        sel = core & (owner == k)
        if sel.sum() >= 3:
            ks.append(k)
            mids.append(float(np.median(s[sel])))
            counts.append(int(sel.sum()))
    # frames holding a few scattered noise maxima only are no smear
    good = np.asarray(counts) >= 0.25 * np.median(counts) if counts else np.zeros(0, bool)
    ks, mids, counts = (list(np.asarray(v)[good]) for v in (ks, mids, counts))
    if len(ks) < 2:
        msg = f"the FF file holds the meteor near its path in {len(ks)} frame(s); need >= 2"
        raise InputError(msg)
    k_arr, m_arr = np.asarray(ks, float), np.asarray(mids)
    wts = np.sqrt(np.asarray(counts, float))
    coef = _robust_polyfit(k_arr, m_arr, wts, 1)
    if len(ks) >= 8:  # a decelerating meteor: quadratic only when it fits clearly better
        quad = _robust_polyfit(k_arr, m_arr, wts, 2)
        if _rms(quad, k_arr, m_arr) < 0.7 * _rms(coef, k_arr, m_arr):
            coef = quad
    edges = np.arange(int(frames.min()), int(frames.max()) + 2) - 0.5
    ends = np.polyval(coef, edges)
    if not np.all(np.diff(ends) > 0):
        msg = "the meteor does not advance along its path in the FF file's maxframe plane"
        raise InputError(msg)
    return ends


def ff_head_photometry(
    ff: FFFile,
    phot: Table,
    trajectory: Any,
    *,
    fwhm: float,
    noise: float | None = None,
    frame_index: dict[int, int] | None = None,
    saturation: float | None = 255.0,
    pad: int = 2,
    fit_fwhm: bool = True,
) -> Table:
    """The head's flux in each frame of an FF file, wings included (see the module docstring).

    Parameters
    ----------
    ff : FFFile
        The file the clip's frames were rebuilt from.
    phot : Table
        Head photometry of the rebuilt frames
        (:func:`skysift.bolide.measurement.head_photometry`): ``frame``,
        ``flux``, ``flux_err``, ``saturated``.
    trajectory : Trajectory or GreatCircleTrajectory
        The head's path.
    fwhm : float
        PSF FWHM, px (> 0): the pipeline's (the calibration's, else 3 px).
    noise : float, optional
        Noise sigma per pixel of one frame, ADU (> 0). Default the median
        ``stdpixel`` around the path (the rebuilt frames' own noise is far
        lower: they hold ``avepixel`` almost everywhere).
    frame_index : dict int -> int, optional
        Clip frame -> FF frame (for clips read with a stride). Default: the
        same number.
    saturation : float or None, optional
        Pixels at or above ``saturation - 3 noise`` are left out of the fit.
        Default 255 (8-bit).
    pad : int, optional
        Frames before the first and after the last head frame whose (faint)
        smears are fitted too, since they hold pixels of the head frames'
        wings. Default 2.
    fit_fwhm : bool, optional
        Fit the FWHM too (starting from ``fwhm``, within a factor 2) to the
        pixels the frames hold: their profile across the path is complete
        in every frame. Default True (without a calibration the pipeline's
        FWHM is a 3 px guess, and 0.2 px off moves the fluxes by ~4 %).

    Returns
    -------
    astropy.table.Table
        A copy of ``phot`` with ``flux`` (ADU, the frame's flux whose
        simulated compression matches the sum of its own pixels) and
        ``flux_err`` (at least the aperture's) replaced in unsaturated
        frames, and the new columns ``flux_kept`` (that sum, ADU; else the
        input flux), ``ff_kept`` (``flux_kept / flux``) and ``flux_model``
        (the least-squares fit's flux, ADU). Saturated frames keep the
        aperture flux (a bright limit).
        ``meta["ff_fwhm"]``: the FWHM used, px.

    Raises
    ------
    InputError
        If ``ff`` is not an :class:`FFFile`, ``noise`` or ``fwhm`` is not
        positive, ``phot`` lacks a column, or the meteor cannot be followed
        in the ``maxframe`` plane (see :func:`ff_segment_ends`).

    References
    ----------
    .. [1] Vida, D., et al. 2021, MNRAS 506, 5046, section 2 (FF files and
       the photometry of frames rebuilt from them).
    """
    if not isinstance(ff, FFFile):
        msg = f"ff must be an FFFile, got {type(ff).__name__}"
        raise InputError(msg)
    if noise is not None and not (np.isfinite(noise) and noise > 0):
        msg = f"noise must be > 0 ADU, got {noise!r}"
        raise InputError(msg)
    if not (np.isfinite(fwhm) and fwhm > 0):
        msg = f"fwhm must be a positive number of pixels, got {fwhm!r}"
        raise InputError(msg)
    missing = [
        c for c in ("frame", "x", "y", "flux", "flux_err", "saturated") if c not in phot.colnames
    ]
    if missing:
        msg = f"phot lacks the columns {', '.join(missing)}"
        raise InputError(msg)
    out = phot.copy()
    out["flux_kept"] = np.asarray(phot["flux"], float)
    out["ff_kept"] = np.full(len(out), np.nan)
    if len(out) == 0:
        return out
    index = frame_index or {}
    kf = np.array([index.get(int(f), int(f)) for f in phot["frame"]], int)
    n_ff = max(int(ff.nframes), int(ff.maxframe.max()) + 1)
    lo, hi = max(0, kf.min() - int(pad)), min(n_ff - 1, kf.max() + int(pad))
    fit_frames = np.arange(lo, hi + 1)
    h, w = ff.shape
    bbox = _bbox(phot, trajectory, fwhm, h, w)
    if noise is None:
        noise = _frame_noise(ff, bbox, n_ff)
    ends = ff_segment_ends(ff, trajectory, fit_frames, noise=noise, fwhm=fwhm, bbox=bbox)
    y0, y1, x0, x1 = bbox
    yy, xx = np.mgrid[y0:y1, x0:x1]
    s, d = trajectory.project(xx.ravel(), yy.ravel())
    near = (np.abs(d) <= 3.0 * fwhm + 2.0) & (s >= ends[0] - 3 * fwhm) & (s <= ends[-1] + 3 * fwhm)
    s, d = s[near], d[near]
    owner = ff.maxframe[y0:y1, x0:x1].ravel()[near].astype(int)
    top = ff.maxpixel[y0:y1, x0:x1].ravel()[near].astype(float)
    data = top - ff.avepixel[y0:y1, x0:x1].ravel()[near]
    col = owner - lo
    mine = (col >= 0) & (col < len(fit_frames))
    usable = mine & (top < (saturation - 3.0 * noise if saturation is not None else np.inf))
    model, design = _design(s, d, ends, fwhm, col, mine, n_ff)
    amp, sel = _fit(model, design, data, usable, col, noise, _first_guess(model, data, col, mine))
    cc = np.clip(col, 0, len(fit_frames) - 1)
    strong = sel & (model[np.arange(len(cc)), cc] * amp[cc] > _STRONG * noise)
    if fit_fwhm and strong.sum() > len(fit_frames) + 1:
        # the FWHM that fits best the bright pixels the frames hold (their profile across the
        # path is complete); faint wing pixels are left out: the maximum over the frames
        # keeps only those of them that the noise pushed up
        def cost(fw: float) -> float:
            dsg = _design(s[strong], d[strong], ends, fw, col[strong], mine[strong], n_ff)[1]
            with np.errstate(invalid="ignore", over="ignore"):
                a = nnls(dsg, data[strong], maxiter=50 * dsg.shape[1])[0]
                sq = float(np.sum((dsg @ a - data[strong]) ** 2))
            return sq if np.isfinite(sq) else np.inf

        res = minimize_scalar(cost, bounds=(0.5 * fwhm, 2.0 * fwhm), method="bounded")
        fwhm = float(res.x)
        model, design = _design(s, d, ends, fwhm, col, mine, n_ff)
        amp, sel = _fit(model, design, data, usable, col, noise, amp)
    out.meta["ff_fwhm"] = fwhm
    # each frame's own pixels near its smear, summed as the GMN does, and the fraction of the
    # frame's light such a sum holds by the model through the same compression (its PSF wings
    # lost to the neighbours, the light avepixel took, the noise maxima it gained)
    region = (
        np.stack(
            [
                (s >= ends[c] - 2 * fwhm - 1) & (s <= ends[c + 1] + 2 * fwhm + 1)
                for c in range(len(ends) - 1)
            ]
        )
        & (np.abs(d) <= 2 * fwhm + 1)[None, :]
    )
    held = np.array([data[region[c] & (col == c)].sum() for c in range(len(fit_frames))])
    sky = float(np.median(ff.avepixel[y0:y1, x0:x1]))
    # the fluxes whose simulated sums match the data's (the noise maxima a sum gains do not
    # scale with the flux: a plain ratio would overcorrect faint frames)
    flux = amp.copy()
    for _ in range(4):
        sim = _simulated_sums(model * flux[None, :], region, lo, n_ff, noise, sky, saturation)
        ok = (sim > 0) & (held > 0) & (flux > 0)
        flux = np.where(ok, flux * held / np.where(ok, sim, 1.0), flux)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(flux > 0, held / flux, np.nan)
    out["flux_model"] = np.full(len(out), np.nan)
    sat = np.asarray(phot["saturated"], bool)
    for r, k in enumerate(kf):
        c = int(k - lo)
        out["ff_kept"][r] = frac[c]
        if sat[r] or not (np.isfinite(frac[c]) and frac[c] > 0.2):
            continue
        out["flux_model"][r] = float(amp[c])
        out["flux_kept"][r] = float(held[c])
        out["flux"][r] = float(flux[c])
        err = np.sqrt((region[c] & (col == c)).sum()) * noise / frac[c]
        out["flux_err"][r] = max(float(phot["flux_err"][r]), float(err))
    return out


def _bbox(phot: Table, trajectory: Any, fwhm: float, h: int, w: int):
    """The image box around the head frames' part of the path (with room for the neighbours)."""
    s, _ = trajectory.project(np.asarray(phot["x"], float), np.asarray(phot["y"], float))
    s = s[np.isfinite(s)]
    if s.size == 0:
        msg = "phot holds no finite head position (x, y)"
        raise InputError(msg)
    step = float(np.median(np.abs(np.diff(np.sort(s))))) if s.size > 1 else 0.0
    grow = 3.0 * step + 4.0 * fwhm + 4.0
    ax, ay = trajectory.point(np.array([s.min() - grow, s.max() + grow]))
    m = 4.0 * fwhm + 4.0
    x0 = int(max(0, np.floor(min(ax) - m)))
    x1 = int(min(w, np.ceil(max(ax) + m) + 1))
    y0 = int(max(0, np.floor(min(ay) - m)))
    y1 = int(min(h, np.ceil(max(ay) + m) + 1))
    return y0, y1, x0, x1


def _max_excess(n: int) -> tuple[float, float]:
    """Median and mean of ``max - mean of the others`` over ``n`` standard normal draws."""
    z = np.random.default_rng(12345).standard_normal((4000, n))
    mx = z.max(axis=1)
    e = mx - (z.sum(axis=1) - mx) / (n - 1)
    return float(np.median(e)), float(np.mean(e))


def _frame_noise(ff: FFFile, bbox: tuple[int, int, int, int], n_ff: int) -> float:
    """Noise sigma of one frame (ADU) from ``maxpixel - avepixel`` of the box's pixels.

    The mean excess over the pixels below 6 sigma (a first guess from the
    median; the meteor's pixels are above) divided by its expectation for
    unit noise; ``- 0.5`` for the floored ``avepixel``. ``stdpixel`` is not
    used: RMS's integer formula (with the floored mean) overstates the
    sigma of low-noise 8-bit video.
    """
    y0, y1, x0, x1 = bbox
    excess = ff.maxpixel[y0:y1, x0:x1].astype(float) - ff.avepixel[y0:y1, x0:x1] - 0.5
    med, mean = _max_excess(n_ff)
    guess = max(float(np.median(excess)) / med, 0.3)
    return max(float(np.mean(excess[excess < 6.0 * guess])) / mean, 0.3)


def _simulated_sums(
    light, region, lo, n_ff, noise, sky, saturation=None, n_draws: int = 16
) -> np.ndarray:
    """Mean over noisy draws of each frame's own-pixel sum in ``region`` after FF compression.

    ``light``: (P, K) model light of frames ``lo .. lo + K - 1`` per pixel;
    frames are ``round(sky + light + noise)`` (clipped at ``saturation``),
    compressed as RMS does.
    """
    n_pix, k = light.shape
    rng = np.random.default_rng(0)  # a fixed quadrature of the expectation, not user randomness
    full = np.zeros((n_ff, n_pix))
    full[lo : lo + k] = light.T
    total = np.zeros(k)
    for _ in range(n_draws):
        v = np.round(sky + full + noise * rng.standard_normal(full.shape))
        if saturation is not None:
            v = np.minimum(v, saturation)
        mx = v.max(axis=0)
        arg = v.argmax(axis=0)
        ave = np.floor((v.sum(axis=0) - mx) / (n_ff - 1))
        for c in range(k):
            own = region[c] & (arg == lo + c)
            total[c] += (mx[own] - ave[own]).sum()
    return total / n_draws


def _robust_polyfit(k: np.ndarray, m: np.ndarray, w: np.ndarray, deg: int) -> np.ndarray:
    """Weighted polynomial fit with one pass rejecting points beyond max(1 px, 3 MAD)."""
    coef = np.polyfit(k, m, deg, w=w)
    res = m - np.polyval(coef, k)
    mad = 1.4826 * float(np.median(np.abs(res - np.median(res))))
    keep = np.abs(res) <= max(1.0, 3.0 * mad)
    if keep.sum() >= deg + 2 and not keep.all():
        coef = np.polyfit(k[keep], m[keep], deg, w=w[keep])
    return coef


def _rms(coef: np.ndarray, k: np.ndarray, m: np.ndarray) -> float:
    res = m - np.polyval(coef, k)
    return float(np.sqrt(np.median(res**2)))


def _design(s, d, ends, fwhm, col, mine, n_ff) -> tuple[np.ndarray, np.ndarray]:
    """Model images (P, K) and the design matrix of the FF planes (owner's light minus avepixel's)."""
    model = ff_smear_model(s, d, ends, fwhm)
    design = -model / (n_ff - 1)
    rows = np.flatnonzero(mine)
    design[rows, col[rows]] = model[rows, col[rows]]
    return model, design


def _fit(model, design, data, usable, col, noise, amp) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fluxes over the pixels the model gives clearly to the frame that holds them."""
    sel = np.zeros(len(data), bool)
    for _ in range(3):
        pred = model * amp[None, :]
        order = np.sort(pred, axis=1)
        best = np.argmax(pred, axis=1)
        sure = (order[:, -1] > _SURE * noise) & (order[:, -1] - order[:, -2] > _SURE * noise)
        new = usable & sure & (best == col)
        if new.sum() < model.shape[1]:
            break
        sel = new
        # fluxes are >= 0: a faint neighbour with few pixels of its own cannot run away
        amp = nnls(design[sel], data[sel], maxiter=50 * design.shape[1])[0]
    return amp, sel


def _first_guess(model, data, col, mine) -> np.ndarray:
    """Flux per frame from the pixels each frame holds: their excess over their model fraction."""
    amp = np.zeros(model.shape[1])
    for c in range(model.shape[1]):
        sel = mine & (col == c)
        frac = model[sel, c].sum()
        amp[c] = max(float(data[sel].sum()) / frac, 0.0) if frac > 0.05 else 0.0
    return amp


def ff_clip_photometry(
    sequence: FrameSequence,
    phot: Table,
    trajectory: Any,
    *,
    fwhm: float,
    messages: list[str] | None = None,
) -> Table:
    """:func:`ff_head_photometry` for a clip read from an FF file; other clips pass unchanged.

    The hook of the bolide pipeline (:func:`skysift.bolide.pipeline.measure_bolide`):
    a sequence whose ``meta["ff"]`` holds the :class:`FFFile` it was rebuilt
    from (:func:`skysift.io.gmn.ff_sequence`) gets the FF photometry, its
    frames mapped to the file's through each frame's ``meta["index"]``.
    When the meteor cannot be followed in the ``maxframe`` plane the
    aperture photometry stays and a message says so.

    Parameters
    ----------
    sequence : FrameSequence
        The clip's frames as read.
    phot : Table
        Head photometry of the clip's frames.
    trajectory : Trajectory or GreatCircleTrajectory
    fwhm : float
        PSF FWHM, px.
    messages : list of str, optional
        Notes for the report are appended here.

    Returns
    -------
    astropy.table.Table
        ``phot`` itself, or the FF photometry (see :func:`ff_head_photometry`).
    """
    ff = sequence.meta.get("ff") if isinstance(sequence.meta, dict) else None
    if not isinstance(ff, FFFile) or len(phot) == 0:
        return phot
    index = {i: int(f.meta.get("index", i)) for i, f in enumerate(sequence)}
    if len(set(index.values())) != len(index):  # e.g. split into fields: no one-to-one map
        if messages is not None:
            messages.append("FF photometry not corrected: the clip's frames are not the file's")
        return phot
    try:
        out = ff_head_photometry(ff, phot, trajectory, fwhm=fwhm, frame_index=index)
    except InputError as err:
        if messages is not None:
            messages.append(f"FF photometry not corrected for the PSF wings lost: {err}")
        return phot
    if messages is not None:
        messages.append(
            "FF file: head fluxes corrected for the PSF wings each frame lost to its "
            f"neighbours (FWHM {out.meta['ff_fwhm']:.2f} px)"
        )
    return out
