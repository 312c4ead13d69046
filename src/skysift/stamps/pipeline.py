"""From stamps or dithered frames to a classified catalogue (``skysift stamps``).

:func:`classify_stamps` classifies ready-made stamps; :func:`run_stamps`
reads a FITS cube or a folder of FITS stamps, or registered dithered frames
(then it detects sources on the reference dither with sep, cuts stamps from
every dither and measures SSO rates from the centroid shift), and writes
``stamps.ecsv`` plus one contact-sheet PNG per class.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sep
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skysift.errors import InputError, NoDetectionsWarning
from skysift.outputs.files import write_json, write_table
from skysift.stamps.data import CLASSES, EXPOSURE_S, MAX_DITHERS, PIXEL_SCALE, STAMP_SIZE
from skysift.stamps.model import StampClassifier, prepare_stamps
from skysift.stamps.plots import save_contact_sheets
from skysift.stamps.train import load_stamp_classifier

__all__ = ["TABLE_COLUMNS", "classify_stamps", "cut_stamps", "run_stamps"]

#: Columns of the output table (``stamps.ecsv``).
TABLE_COLUMNS = (
    "id", "x", "y", "ra", "dec", "class", "p_sso", "p_star", "p_galaxy", "p_cosmic",
    "rate", "pa",
)  # fmt: skip
_FITS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")


def _as_stamp_cube(stamps: Any, nan: str) -> np.ndarray:
    x = np.asarray(stamps, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        msg = f"stamps must have shape (N, C, H, W) or (N, H, W), got {x.shape}"
        raise InputError(msg)
    n, c, h, w = x.shape
    if not 1 <= c <= MAX_DITHERS:
        msg = f"stamps must have 1 to {MAX_DITHERS} dither channels, got {c}"
        raise InputError(msg)
    if h != w or h < STAMP_SIZE:
        msg = f"stamps must be square and at least {STAMP_SIZE}x{STAMP_SIZE} pixels (larger ones are centre-cropped), got {h}x{w}"
        raise InputError(msg)
    if n == 0:
        return x[:, :, :STAMP_SIZE, :STAMP_SIZE]
    if h > STAMP_SIZE:  # documented handling: centre crop
        o = (h - STAMP_SIZE) // 2
        x = x[:, :, o : o + STAMP_SIZE, o : o + STAMP_SIZE]
    bad = ~np.isfinite(x)
    if bad.any():
        full = bad.reshape(n, c, -1).all(axis=2)
        if full.any():
            i, ch = np.argwhere(full)[0]
            msg = f"stamp {i} has a missing dither: channel {ch} is entirely NaN/inf ({int(full.sum())} such channels); pass stamps with the dithers present or fewer channels"
            raise InputError(msg)
        if nan == "raise":
            idx = np.unique(np.nonzero(bad.reshape(n, -1).any(axis=1))[0])
            msg = f"stamps {idx[:10].tolist()} contain NaN/inf pixels; pass nan='fill' to replace them by the channel median"
            raise InputError(msg)
        if nan != "fill":
            msg = f"nan must be 'raise' or 'fill', got {nan!r}"
            raise InputError(msg)
        x = x.copy()
        med = np.nanmedian(np.where(bad, np.nan, x).reshape(n, c, -1), axis=2)
        x = np.where(bad, med[:, :, None, None], x)
    flat = x.reshape(n, c, -1)
    empty = (flat.max(axis=2) == flat.min(axis=2)) & (c > 1)
    if empty.any():
        i, ch = np.argwhere(empty)[0]
        msg = f"stamp {i} has a missing dither: channel {ch} is constant ({int(empty.sum())} such channels)"
        raise InputError(msg)
    return x


def classify_stamps(
    stamps: np.ndarray,
    *,
    weights: str | Path | StampClassifier | None = None,
    nan: str = "raise",
    batch_size: int = 2048,
) -> Table:
    """Classify stamps into SSO / cosmic ray / galaxy / star.

    Parameters
    ----------
    stamps : ndarray, shape (N, C, H, W) or (N, H, W)
        Registered dithers as channels (1 to 4; channel 0 the reference),
        linear pixel values (any unit; sky not subtracted is fine), square,
        at least 32×32 (larger stamps are centre-cropped to 32×32). The
        object should sit within ~1 px of the stamp centre in channel 0.
    weights : str, Path or StampClassifier, optional
        Default the shipped weights.
    nan : {"raise", "fill"}, optional
        NaN/inf pixels raise (default) or are replaced by the channel median.
        A channel entirely NaN or constant (a missing dither) always raises.
    batch_size : int, optional
        Stamps per forward pass. Default 2048.

    Returns
    -------
    astropy.table.Table
        ``id`` (input index), ``class``, ``p_sso``, ``p_star``, ``p_galaxy``,
        ``p_cosmic`` (temperature-calibrated probabilities, summing to 1).

    Raises
    ------
    InputError
        For stamps of the wrong dimensions, size or channel count, NaNs (with
        ``nan="raise"``) and missing dithers.
    """
    x = _as_stamp_cube(stamps, nan)
    model = weights if isinstance(weights, StampClassifier) else load_stamp_classifier(weights)
    p = model.predict_proba(prepare_stamps(x), batch_size=batch_size)
    return _prob_table(p)


def _prob_table(p: np.ndarray) -> Table:
    k = p.argmax(1) if len(p) else np.zeros(0, int)
    return Table(
        {
            "id": np.arange(len(p)),
            "class": np.array([CLASSES[i] for i in k], dtype="<U10"),
            "p_sso": p[:, CLASSES.index("sso")],
            "p_star": p[:, CLASSES.index("star")],
            "p_galaxy": p[:, CLASSES.index("galaxy")],
            "p_cosmic": p[:, CLASSES.index("cosmic_ray")],
        }
    )


def cut_stamps(
    frames: np.ndarray, x: np.ndarray, y: np.ndarray, *, size: int = STAMP_SIZE
) -> np.ndarray:
    """Cut ``size``×``size`` stamps centred on (x, y) from every frame (edge pixels repeated).

    Parameters
    ----------
    frames : ndarray, shape (C, H, W)
        Registered dithers.
    x, y : ndarray, shape (N,)
        Centres, pixels (0-based).

    Returns
    -------
    ndarray of float32, shape (N, C, size, size)
    """
    f = np.asarray(frames, np.float32)
    pad = size
    big = np.pad(f, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    out = np.empty((len(x), f.shape[0], size, size), np.float32)
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        ix = int(np.floor(xi + 0.5)) - size // 2 + pad
        iy = int(np.floor(yi + 0.5)) - size // 2 + pad
        out[i] = big[:, iy : iy + size, ix : ix + size]
    return out


def _detect(img: np.ndarray, threshold: float) -> np.ndarray:
    d = np.ascontiguousarray(img, np.float64)
    bkg = sep.Background(d)
    return sep.extract(d - bkg.back(), threshold, err=bkg.globalrms, minarea=3)


def _read_fits_array(path: Path) -> tuple[np.ndarray, Any]:
    with fits.open(path) as hdul:
        for hdu in hdul:
            if hdu.data is not None and hdu.data.ndim >= 2:
                return np.asarray(hdu.data, np.float32), hdu.header
    msg = f"{path} holds no image data"
    raise InputError(msg)


def _wcs(header: Any) -> Any:

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            w = WCS(header).celestial
        except Exception:  # noqa: BLE001 - any malformed WCS means "no WCS"
            return None
    return w if w.has_celestial else None


def _list_inputs(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    paths: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.name.lower().endswith(_FITS))
        elif p.is_file():
            paths.append(p)
        else:
            msg = f"input {p} does not exist"
            raise InputError(msg)
    if not paths:
        msg = f"no FITS stamps or frames found in {items}"
        raise InputError(msg)
    return paths


def _frames_catalogue(
    frames: np.ndarray,
    header: Any,
    *,
    threshold: float,
    dither_interval: float,
    exposure_s: float,
    pixel_scale: float,
) -> tuple[Table, np.ndarray]:
    obj0 = _detect(frames[0], threshold)
    n = len(obj0)
    x, y = np.asarray(obj0["x"], float), np.asarray(obj0["y"], float)
    stamps = cut_stamps(frames, x, y)
    t = Table({"x": x, "y": y})
    w = _wcs(header) if header is not None else None
    if w is not None and n:
        sky = w.pixel_to_world(x, y)
        t["ra"], t["dec"] = sky.ra.deg, sky.dec.deg
    else:
        t["ra"], t["dec"] = np.full(n, np.nan), np.full(n, np.nan)
    # centroid shift of moving sources between dither 0 and 1 (new sources of dither 1)
    t["dx"], t["dy"] = np.full(n, np.nan), np.full(n, np.nan)
    if frames.shape[0] >= 2 and n:
        obj1 = _detect(frames[1], threshold)
        x1, y1 = np.asarray(obj1["x"], float), np.asarray(obj1["y"], float)
        if len(x1):
            d01 = np.hypot(x1[:, None] - x[None], y1[:, None] - y[None])
            new = d01.min(axis=1) > 2.0  # dither-1 sources without a dither-0 counterpart
            for i in range(n):
                d = np.hypot(x1 - x[i], y1 - y[i])
                d[~new] = np.inf
                j = int(np.argmin(d))
                if np.isfinite(d[j]):
                    t["dx"][i], t["dy"][i] = x1[j] - x[i], y1[j] - y[i]
    hours = dither_interval * exposure_s / 3600.0
    t["shift_rate"] = np.hypot(t["dx"], t["dy"]) * pixel_scale / hours
    t["shift_pa"] = np.degrees(np.arctan2(t["dy"], t["dx"])) % 360.0
    return t, stamps


def run_stamps(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    n_dithers: int | None = None,
    weights: str | Path | None = None,
    dither_interval: float = 1.2,
    exposure_s: float = EXPOSURE_S,
    pixel_scale: float = PIXEL_SCALE,
    threshold: float = 5.0,
    max_rate: float = 200.0,
    nan: str = "raise",
    contact_sheets: bool = True,
) -> Table:
    """Classify ready-made stamps or the sources of registered dithered frames; write the results.

    Parameters
    ----------
    inputs : path or sequence of paths
        ``n_dithers`` None (stamps): a FITS cube ``(N, H, W)`` (1-channel
        stamps) or ``(N, C, H, W)``, or FITS files / folders of single
        stamps ``(H, W)`` or ``(C, H, W)``. ``n_dithers`` given (frames):
        ``n_dithers`` FITS frames (files or a folder, sorted by name) or one
        ``(n_dithers, H, W)`` cube, registered, the first the reference.
    out_dir : str or Path
        Output folder (created).
    n_dithers : int, optional
        Dithers of the frames (1–4); None means the inputs are stamps.
    weights : str or Path, optional
        Default the shipped weights.
    dither_interval : float, optional
        Start-to-start time between dithers in exposures (for SSO rates). Default 1.2.
    exposure_s : float, optional
        Exposure, seconds. Default 565 (Euclid VIS).
    pixel_scale : float, optional
        Arcsec per pixel (for rates). Default 0.1.
    threshold : float, optional
        sep detection threshold in background rms. Default 5.
    max_rate : float, optional
        SSO rates above this (arcsec/h) are not matched (``rate`` NaN). Default 200.
    nan : {"raise", "fill"}, optional
        Handling of NaN pixels in stamps (see :func:`classify_stamps`).
    contact_sheets : bool, optional
        Write ``contact_<class>.png`` per class. Default True.

    Returns
    -------
    astropy.table.Table
        :data:`TABLE_COLUMNS`: ``x``, ``y`` (pixels; stamp centres for ready-made
        stamps), ``ra``, ``dec`` (degrees, NaN without a WCS), ``rate``
        (arcsec/h) and ``pa`` (degrees counter-clockwise from +x) for SSOs
        (from the centroid shift between dithers 0 and 1), NaN otherwise.
        Also written to ``out_dir/stamps.ecsv``.

    Raises
    ------
    InputError
        For missing inputs, a wrong number of frames, stamps of the wrong size,
        NaNs (``nan="raise"``) or a cube with a missing dither.
    """
    out = Path(out_dir)
    paths = _list_inputs(inputs)
    if n_dithers is None:
        arrays = [_read_fits_array(p)[0] for p in paths]
        if len(arrays) == 1 and arrays[0].ndim in (3, 4):
            cube = arrays[0]
        else:
            shapes = {a.shape for a in arrays}
            if len(shapes) != 1:
                msg = f"stamps have different shapes {sorted(shapes)}: a dither may be missing"
                raise InputError(msg)
            cube = np.stack(arrays)
        tab = classify_stamps(cube, weights=weights, nan=nan)
        s = cube.shape[-1]
        tab["x"] = np.full(len(tab), (s - 1) / 2)
        tab["y"] = np.full(len(tab), (s - 1) / 2)
        tab["ra"] = tab["dec"] = tab["rate"] = tab["pa"] = np.full(len(tab), np.nan)
        stamps = _as_stamp_cube(cube, nan)
    else:
        if not 1 <= int(n_dithers) <= MAX_DITHERS:
            msg = f"n_dithers must be 1 to {MAX_DITHERS}, got {n_dithers}"
            raise InputError(msg)
        arrays, headers = zip(*(_read_fits_array(p) for p in paths), strict=True)
        if len(arrays) == 1 and arrays[0].ndim == 3:
            frames = arrays[0]
        else:
            frames = np.stack(arrays) if all(a.ndim == 2 for a in arrays) else None
        if frames is None or frames.shape[0] != int(n_dithers):
            got = "a non-2-D frame" if frames is None else f"{frames.shape[0]} frames"
            msg = f"expected {n_dithers} registered dither frames, got {got} from {len(paths)} file(s): a dither is missing or extra"
            raise InputError(msg)
        if not np.isfinite(frames).all():
            frames = np.where(np.isfinite(frames), frames, np.nanmedian(frames))
        cat, stamps = _frames_catalogue(
            frames, headers[0], threshold=threshold, dither_interval=dither_interval,
            exposure_s=exposure_s, pixel_scale=pixel_scale,
        )  # fmt: skip
        if len(cat):
            tab = classify_stamps(stamps, weights=weights, nan="fill")
        else:
            warnings.warn(
                "no sources detected on the reference dither", NoDetectionsWarning, stacklevel=2
            )
            tab = _prob_table(np.zeros((0, len(CLASSES)), np.float32))
        for k in ("x", "y", "ra", "dec"):
            tab[k] = cat[k]
        is_sso = np.asarray(tab["class"]) == "sso"
        ok = is_sso & (np.asarray(cat["shift_rate"]) <= max_rate)
        tab["rate"] = np.where(ok, cat["shift_rate"], np.nan)
        tab["pa"] = np.where(ok, cat["shift_pa"], np.nan)
    tab = tab[list(TABLE_COLUMNS)]
    tab["x"].unit = tab["y"].unit = "pix"
    tab["ra"].unit = tab["dec"].unit = "deg"
    tab["rate"].unit = "arcsec / h"
    tab["pa"].unit = "deg"
    tab.meta.update(
        inputs=[str(p) for p in paths], n_dithers=n_dithers, dither_interval=dither_interval,
        exposure_s=exposure_s, pixel_scale=pixel_scale, threshold=threshold,
        pa_convention="degrees counter-clockwise from +x (pixel frame)",
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_table(tab, out / "stamps.ecsv")
    write_json({k: v for k, v in tab.meta.items()}, out / "stamps_config.json")
    if contact_sheets and len(tab):
        save_contact_sheets(stamps, tab, out)
    return tab
