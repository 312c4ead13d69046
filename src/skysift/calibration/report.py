"""Write a calibration's files: stars.ecsv, matches.ecsv, calibration.json, calibration.png."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table

from skysift.calibration.fitswcs import fisheye_to_fits_wcs, fisheye_wcs_header
from skysift.calibration.plots import plot_calibration
from skysift.errors import CalibrationError, InputError
from skysift.outputs.files import write_json, write_table, write_with

if TYPE_CHECKING:
    from skysift.calibration.frame import CalibrationResult

__all__ = [
    "write_stars",
    "write_calibration",
    "write_calibrated_fits",
    "calibration_header",
    "zero_point_cards",
    "MATCH_COLUMNS",
]

#: Columns of matches.ecsv, in order (extra columns follow).
MATCH_COLUMNS = (
    "x",
    "y",
    "catalog_id",
    "ra",
    "dec",
    "alt",
    "az",
    "catalog_mag",
    "inst_mag",
    "mag",
    "residual_px",
)
_UNITS = {
    "x": "pix",
    "y": "pix",
    "ra": "deg",
    "dec": "deg",
    "alt": "deg",
    "az": "deg",
    "catalog_mag": "mag",
    "inst_mag": "mag",
    "mag": "mag",
    "residual_px": "pix",
    "mag_err": "mag",
    "inst_mag_err": "mag",
}


def write_stars(
    stars: Table, out_dir: str | Path, calibration: CalibrationResult | None = None
) -> Path:
    """Write ``stars.ecsv``: every detection, in 0-based pixel coordinates.

    Parameters
    ----------
    stars : astropy.table.Table
        A star finder's table.
    out_dir : path
        The output folder.
    calibration : CalibrationResult, optional
        When given, ``ra`` and ``dec`` (deg, ICRS) of every detection are
        added from its camera model. (Calibrated magnitudes are in
        ``matches.ecsv``: the zero point is fitted to aperture fluxes, not to
        the finder's ``flux``.)

    Returns
    -------
    Path
    """
    t = stars.copy()
    t.meta["comment"] = (
        "skysift detections; x, y are 0-based pixels, (0, 0) is the centre of the first pixel"
    )
    if calibration is not None and len(t):
        x, y = np.asarray(t["x"], float), np.asarray(t["y"], float)
        ra, dec = calibration.pixel_to_radec(x, y)
        t["ra"] = np.asarray(ra, float) * u.deg
        t["dec"] = np.asarray(dec, float) * u.deg
        t.meta["comment"] += "; ra, dec ICRS degrees from the calibration"
    return write_table(t, Path(out_dir) / "stars.ecsv")


def _matches_table(result: CalibrationResult) -> Table:
    m = result.matches
    cols = [c for c in MATCH_COLUMNS if c in m.colnames] + [
        c for c in m.colnames if c not in MATCH_COLUMNS
    ]
    t = Table()
    for c in cols:
        values = m[c]
        t[c] = np.asarray(values) if c != "catalog_id" else np.asarray(values, dtype=str)
        if c in _UNITS:
            t[c].unit = _UNITS[c]
    if "alt" not in t.colnames:  # site or time unknown: keep the schema
        for c in ("alt", "az"):
            t[c] = np.full(len(t), np.nan)
            t[c].unit = "deg"
    t.meta["catalog_band"] = result.photometric_band
    t.meta["comment"] = (
        "skysift identified stars; x, y 0-based pixels; ra, dec ICRS degrees; alt, az degrees (az from north through east)"
    )
    return t


def zero_point_cards(result: CalibrationResult) -> list[tuple[str, Any, str]]:
    """FITS cards of the photometric zero point (empty when none was fitted).

    ``MAGZP`` / ``MAGZPERR`` follow the convention of survey pipelines (ZTF, PTF,
    DECam community pipeline): ``m = -2.5 log10(flux) + MAGZP``, with ``flux``
    in ADU per second when the exposure time was known (``MAGZPUNT``), else in
    ADU. With an extinction term ``MAGZP`` is the zero point above the
    atmosphere and ``MAGZPEXT`` the coefficient ``k``:
    ``m = -2.5 log10(flux) + MAGZP - k X`` at air mass ``X``.

    Parameters
    ----------
    result : CalibrationResult

    Returns
    -------
    list of (keyword, value, comment)
        ``MAGZP``, ``MAGZPERR``, ``MAGZPEXT`` (0 when not fitted),
        ``MAGZPN`` (stars used), ``MAGZPRMS``, ``MAGZPBND``, ``MAGZPUNT``;
        for the terms fitted, their coefficients and 1-sigma errors
        (``MAGZPEXE``; ``MAGZPCOL``/``MAGZPCOE``/``MAGZPCRF`` for colour;
        ``MAGZPLIN``/``MAGZPLIE``/``MAGZPLRF`` for non-linearity), the
        selection (``MAGZPSEL``) and the completeness limit (``MAGZPLIM``).
    """
    zp = result.zero_point
    if zp is None:
        return []
    unit = "ADU/s" if result.frame.exposure else "ADU"
    has_k = "extinction" in zp.terms
    cards: list[tuple[str, Any, str]] = [
        ("MAGZP", round(float(zp.zero_point), 5), f"[mag] m = -2.5 log10(flux/{unit}) + MAGZP"),
        ("MAGZPERR", round(float(zp.zero_point_err), 5), "[mag] 1-sigma error of MAGZP"),
        (
            "MAGZPEXT",
            round(float(zp.extinction_k), 5) if has_k else 0.0,
            "[mag/airmass] extinction k: m -= k X" if has_k else "no extinction term fitted",
        ),
        ("MAGZPN", int(zp.n_used), "number of stars in the zero-point fit"),
        ("MAGZPRMS", round(float(zp.rms_mag), 5), "[mag] robust scatter of the fit"),
        ("MAGZPBND", str(result.photometric_band), "catalogue band of the zero point"),
        ("MAGZPUNT", unit, "flux unit of MAGZP"),
    ]
    # the terms chosen by the model selection (calibration.photometric), each with its error
    if "extinction" in zp.terms:
        cards.append(
            ("MAGZPEXE", round(float(zp.extinction_k_err), 5), "[mag/airmass] 1-sigma error of k")
        )
    if "color" in zp.terms:
        cards += [
            (
                "MAGZPCOL",
                round(float(zp.color_coeff), 5),
                "[mag/mag] colour term c: m += c (B-V - ref)",
            ),
            ("MAGZPCOE", round(float(zp.color_coeff_err), 5), "[mag/mag] 1-sigma error of c"),
            ("MAGZPCRF", round(float(zp.color_ref), 4), "[mag] reference colour (B-V) of c"),
        ]
    if "linearity" in zp.terms:
        cards += [
            ("MAGZPLIN", round(float(zp.linearity), 5), "non-linearity s: m += s (m_inst - ref)"),
            ("MAGZPLIE", round(float(zp.linearity_err), 5), "1-sigma error of s"),
            ("MAGZPLRF", round(float(zp.linearity_ref), 4), "[mag] reference m_inst of s"),
        ]
    if zp.criterion != "none":
        terms = "+".join(t for t in zp.terms if t != "zero_point") or "constant"
        cards.append(
            ("MAGZPSEL", f"{zp.criterion}: {terms}"[:68], "terms chosen by this criterion")
        )
    if np.isfinite(zp.mag_limit):
        cards.append(
            ("MAGZPLIM", round(float(zp.mag_limit), 3), "[mag] faintest star above completeness")
        )
    return cards


def _wcs_header(result: CalibrationResult) -> tuple[fits.Header | None, dict[str, Any] | None]:
    """The WCS cards of a calibration (TAN-SIP, or the all-sky approximation) and its stats."""
    if result.model_type == "tan-sip" and hasattr(result.solution, "to_header"):
        return result.solution.to_header(), None
    if result.model_type == "fisheye":
        try:
            wcs, stats = fisheye_to_fits_wcs(result)
        except CalibrationError as err:
            warnings.warn(f"no FITS WCS for this all-sky calibration: {err}", stacklevel=3)
            return None, None
        return fisheye_wcs_header(wcs, stats), stats.to_dict()
    return None, None


def calibration_header(result: CalibrationResult) -> fits.Header:
    """Header cards of a calibration: WCS (with its error for all-sky frames) and zero point.

    Parameters
    ----------
    result : CalibrationResult

    Returns
    -------
    astropy.io.fits.Header
        The narrow-field TAN-SIP WCS (``PlateSolution.to_header``) or, for an
        all-sky calibration, its ZEA/ARC+SIP approximation with the error
        keywords ``WCSMAXER``... (:func:`skysift.calibration.fitswcs.fisheye_wcs_header`),
        then the zero-point keywords (:func:`zero_point_cards`).
    """
    hdr, _ = _wcs_header(result)
    hdr = fits.Header() if hdr is None else hdr
    for key, value, comment in zero_point_cards(result):
        hdr[key] = (value, comment)
    return hdr


#: Keywords of an old WCS removed from the copy of the input (ours replaces it).
_OLD_WCS = re.compile(
    r"^(WCSAXES|CTYPE\d|CRVAL\d|CRPIX\d|CDELT\d|CUNIT\d|CROTA\d|CD\d_\d|PC\d_\d|PV\d_\d+"
    r"|PS\d_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|[AB]P?_\d+_\d+|[AB]P?_ORDER"
    r"|A_DMAX|B_DMAX|IMAGEW|IMAGEH)$"
)
#: Structural keywords astropy recomputes for the copy.
_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|CHECKSUM|DATASUM"
    r"|ZIMAGE|ZSIMPLE|ZTENSION|ZBITPIX|ZNAXIS\d*|ZTILE\d+|ZCMPTYPE|ZNAME\d+|ZVAL\d+|ZQUANTIZ"
    r"|ZDITHER0|ZEXTEND|ZBLOCKED|ZPCOUNT|ZGCOUNT|ZHECKSUM|ZDATASUM|EXTNAME|EXTVER)$"
)


def _input_image(result: CalibrationResult) -> tuple[np.ndarray, fits.Header]:
    """The input's pixels and header as read from the file (FITS), else the luminance."""
    frame = result.frame
    is_fits = frame.meta.get("format") == "fits"
    if is_fits and frame.path is not None and Path(frame.path).is_file():
        data, header = None, None
        try:
            # the stored integers with their BZERO/BSCALE: the copy keeps the input's storage
            with fits.open(frame.path, memmap=False, do_not_scale_image_data=True) as hdul:
                hdu = hdul[int(frame.meta.get("hdu", 0))]
                data, header = np.asarray(hdu.data), hdu.header.copy()
        except (OSError, ValueError, IndexError, TypeError):
            data = None
        while data is not None and data.ndim > 2 and data.shape[0] == 1:
            data = data[0]
        if data is not None and header is not None and data.shape == frame.shape:
            hdr = fits.Header()
            for card in header.cards:
                if not (_STRUCTURAL.match(card.keyword) or _OLD_WCS.match(card.keyword)):
                    hdr.append(card)
            if not np.issubdtype(data.dtype, np.integer):
                for key in ("BLANK", "BZERO", "BSCALE"):
                    hdr.remove(key, ignore_missing=True)
            return data, hdr
    hdr = fits.Header()
    if frame.path is not None:
        hdr["ORIGFILE"] = Path(frame.path).name[:68]  # no comment: long names fill the card
    hdr["COMMENT"] = "Pixels: the luminance of the input image (ORIGFILE) that skysift calibrated."
    if frame.time is not None:
        hdr["DATE-OBS"] = (frame.time.utc.isot, "start of exposure (UTC)")
    if frame.exposure:
        hdr["EXPTIME"] = (float(frame.exposure), "[s] exposure time")
    if result.site is not None:
        hdr["SITELAT"] = (float(result.site.lat), "[deg] observatory latitude")
        hdr["SITELONG"] = (float(result.site.lon), "[deg] observatory longitude, east +")
        hdr["SITEELEV"] = (float(result.site.height), "[m] observatory height")
    return np.asarray(frame.data, np.float32), hdr


def write_calibrated_fits(
    result: CalibrationResult, path: str | Path, *, header: fits.Header | None = None
) -> Path:
    """Write a copy of the input image with the calibration's WCS and zero point in its header.

    Like astrometry.net's ``solve-field`` ``.new`` file and Siril's plate-solved
    images: the input's pixels and header (FITS inputs; an old WCS is replaced),
    or the luminance as float32 (PNG, JPEG, TIFF, arrays), plus
    :func:`calibration_header`. The input is never overwritten.

    Parameters
    ----------
    result : CalibrationResult
    path : str or Path
        The file to write (atomically).
    header : astropy.io.fits.Header, optional
        The calibration cards, when already computed (:func:`calibration_header`).

    Returns
    -------
    Path

    Raises
    ------
    InputError
        If ``path`` is the input file itself.
    """
    path = Path(path)
    src = result.frame.path
    if src is not None and path.resolve() == Path(src).resolve():
        msg = f"{path}: refusing to overwrite the input image; choose another output name"
        raise InputError(msg)
    data, hdr = _input_image(result)
    cal = calibration_header(result) if header is None else header
    hdr.add_history("skysift: WCS and zero point of the skysift calibration added")
    for card in cal.cards:
        if card.keyword in ("IMAGEW", "IMAGEH"):
            continue
        if card.keyword in ("COMMENT", "HISTORY"):
            hdr.append(card)
        else:
            hdr[card.keyword] = (card.value, card.comment)
    # astropy drops BZERO/BSCALE given with the data: set them on the HDU, unscaled
    scaling = {k: hdr.cards[k] for k in ("BSCALE", "BZERO") if k in hdr}
    for key in scaling:
        del hdr[key]
    hdu = fits.PrimaryHDU(data=data, header=hdr, do_not_scale_image_data=True)
    for key, card in scaling.items():
        hdu.header[key] = (card.value, card.comment)
    return write_with(path, lambda tmp: hdu.writeto(tmp, overwrite=True, output_verify="fix"))


def _write_wcs_file(result: CalibrationResult, header: fits.Header, path: Path) -> Path:
    """``calibration.wcs.fits``: a header-only primary HDU (no NAXIS 0) + the MATCHES table.

    The primary HDU declares ``NAXIS = 2`` with ``NAXIS1 = NAXIS2 = 0`` (no data
    follows, FITS 4.0 §4.4.1.1) so that ``astropy.wcs.WCS(header)`` does not warn
    that the WCS has more axes than the image; the image size is in
    ``IMAGEW``/``IMAGEH`` as in astrometry.net's ``.wcs`` files.
    """
    primary = fits.PrimaryHDU(data=np.zeros((0, 0), np.uint8))
    for card in header.cards:
        if card.keyword in ("COMMENT", "HISTORY"):
            primary.header.append(card)
        else:
            primary.header[card.keyword] = (card.value, card.comment)
    hdus: list[Any] = [primary]
    if result.model_type == "tan-sip":
        # what PlateSolution.save writes, so that PlateSolution.load reads it back
        matches = Table(result.solution.matches, copy=True)
        matches.meta = {
            "EXTNAME": "MATCHES",
            "MAGBAND": str(result.solution.matches.meta.get("catalog_mag_band", "")),
        }
        if "catalog_epoch" in result.solution.matches.meta:
            matches.meta["CATEPOCH"] = float(result.solution.matches.meta["catalog_epoch"])
        hdus.append(fits.table_to_hdu(matches))
    hdul = fits.HDUList(hdus)
    return write_with(path, lambda tmp: hdul.writeto(tmp, overwrite=True))


def write_calibration(
    result: CalibrationResult, out_dir: str | Path, *, plot: bool = True, fits_copy: bool = True
) -> dict[str, Path]:
    """Write every file of a calibration into ``out_dir``.

    Files: ``stars.ecsv``, ``matches.ecsv``, ``calibration.json`` (model and
    fit summary), ``calibration.png`` (unless ``plot=False``),
    ``calibration.wcs.fits`` (a header-only FITS file with the WCS and the zero
    point: the TAN-SIP plate solution, or for an all-sky calibration its
    ZEA/ARC+SIP approximation with its error, see
    :func:`skysift.calibration.fitswcs.fisheye_to_fits_wcs`) and
    ``calibrated.fits`` (unless ``fits_copy=False``: the input image with that
    header, see :func:`write_calibrated_fits`).

    Parameters
    ----------
    result : CalibrationResult
    out_dir : str or Path
    plot : bool, optional
        Write the figure. Default True.
    fits_copy : bool, optional
        Write ``calibrated.fits``. Default True.

    Returns
    -------
    dict
        File role -> path (roles ``stars``, ``matches``, ``wcs``, ``fits``,
        ``calibration``, ``plot``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "stars": write_stars(result.stars, out, result),
        "matches": write_table(_matches_table(result), out / "matches.ecsv"),
    }
    info = result.to_dict()
    wcs_hdr, stats = _wcs_header(result)
    header = fits.Header() if wcs_hdr is None else wcs_hdr
    for key, value, comment in zero_point_cards(result):
        header[key] = (value, comment)
    if wcs_hdr is not None:
        wcs_path = _write_wcs_file(result, header, out / "calibration.wcs.fits")
        info["wcs_file"] = wcs_path.name
        paths["wcs"] = wcs_path
    if stats is not None:
        info["fits_wcs"] = stats
    if fits_copy:
        name = "calibrated.fits"
        src = result.frame.path
        if src is not None and (out / name).resolve() == Path(src).resolve():
            name = f"{Path(src).name.split('.')[0]}.calibrated.fits"
        paths["fits"] = write_calibrated_fits(result, out / name, header=header)
        info["fits_file"] = paths["fits"].name
    paths["calibration"] = write_json(info, out / "calibration.json")
    if plot:
        paths["plot"] = plot_calibration(result, out / "calibration.png")
    return paths
