"""Meteor trails in single long exposures: read, mask, find, calibrate, write tables and figures."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy.time import Time
from matplotlib.figure import Figure

from skysift.bolide.trails import find_trails_and_profiles
from skysift.calibration.pipeline import calibrate
from skysift.detection.masks import scene_mask
from skysift.errors import SkysiftError
from skysift.io import read_frame
from skysift.io.frame import Site
from skysift.outputs.files import atomic_path, write_table
from skysift.outputs.plots import display_stretch

__all__ = ["find_trails_in", "add_sky_coordinates"]


def add_sky_coordinates(table: Table, calibration: Any) -> Table:
    """Add the RA/Dec (and, for an all-sky camera, alt/az) of the trails' ends.

    Parameters
    ----------
    table : astropy.table.Table
        Trails with ``x1, y1, x2, y2`` (px, 0-based).
    calibration : CalibratedFrame
        From :func:`skysift.calibration.pipeline.calibrate` on the same frame.

    Returns
    -------
    astropy.table.Table
        The table, with ``ra1, dec1, ra2, dec2`` (deg, ICRS) added, and
        ``alt1, az1, alt2, az2`` (deg, azimuth from north through east) when
        the camera model is a fisheye (all-sky); ``meta`` records the model
        and its astrometric RMS (px).
    """
    n = len(table)
    x = np.concatenate([np.asarray(table["x1"], float), np.asarray(table["x2"], float)])
    y = np.concatenate([np.asarray(table["y1"], float), np.asarray(table["y2"], float)])
    ra, dec = calibration.pixel_to_radec(x, y) if n else (np.zeros(0), np.zeros(0))
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    table["ra1"], table["dec1"] = ra[:n] * u.deg, dec[:n] * u.deg
    table["ra2"], table["dec2"] = ra[n:] * u.deg, dec[n:] * u.deg
    if calibration.model_type == "fisheye":
        alt, az = calibration.camera.pixel_to_altaz(x, y) if n else (np.zeros(0), np.zeros(0))
        alt, az = np.asarray(alt, float), np.asarray(az, float)
        table["alt1"], table["az1"] = alt[:n] * u.deg, az[:n] * u.deg
        table["alt2"], table["az2"] = alt[n:] * u.deg, az[n:] * u.deg
    table.meta["calibration"] = {
        "model_type": str(calibration.model_type),
        "n_matched": int(calibration.n_matched),
        "astrometric_rms_px": round(float(calibration.astrometric_rms_px), 3),
        "time_utc": None if calibration.time is None else Time(calibration.time).isot,
    }
    return table


#: Trails whose ends and middle lie beyond this fraction of the lens circle's
#: radius and that run along the rim (see :func:`drop_rim_tangents`) are dropped.
RIM_FRACTION = 0.85


def drop_rim_tangents(
    table: Table, profiles: Table, circle: tuple[float, float, float]
) -> tuple[Table, Table]:
    """Drop trails that run along the rim of a fisheye's lens circle.

    Vignetting darkens the last ~15 % of the circle's radius steeply, and the
    trail filter turns that gradient into lines tangent to the rim (four of
    the eight false trails on the cloudy CTA frame). A trail is dropped when
    both its ends and its middle lie beyond :data:`RIM_FRACTION` of the
    radius and it runs within 60 deg of the tangent there. A meteor in that
    band (below ~10 deg altitude) usually runs towards the horizon, radially,
    and is kept.

    Parameters
    ----------
    table, profiles : astropy.table.Table
        Trails (``id``, ``x1``, ``y1``, ``x2``, ``y2``) and their profiles (``id``).
    circle : (xc, yc, radius)
        The lens circle, pixels.

    Returns
    -------
    (table, profiles)
        Without the rim trails; ids renumbered from 1 in the same order.
    """
    if not len(table):
        return table, profiles
    xc, yc, r = circle
    x1, y1 = np.asarray(table["x1"], float), np.asarray(table["y1"], float)
    x2, y2 = np.asarray(table["x2"], float), np.asarray(table["y2"], float)
    xm, ym = (x1 + x2) / 2, (y1 + y2) / 2

    def rho(x, y):
        return np.hypot(x - xc, y - yc) / r

    far = (rho(x1, y1) > RIM_FRACTION) & (rho(x2, y2) > RIM_FRACTION) & (rho(xm, ym) > RIM_FRACTION)
    dx, dy = x2 - x1, y2 - y1
    cos = np.abs(dx * (xm - xc) + dy * (ym - yc)) / np.maximum(
        np.hypot(dx, dy) * np.hypot(xm - xc, ym - yc), 1e-9
    )
    drop = far & (cos < 0.5)
    if not drop.any():
        return table, profiles
    keep_ids = np.asarray(table["id"])[~drop]
    new_id = {int(old): k + 1 for k, old in enumerate(keep_ids)}
    table = table[~drop]
    table["id"] = [new_id[int(i)] for i in table["id"]]
    table.meta["rim_trails_dropped"] = int(drop.sum())
    if len(profiles):
        profiles = profiles[np.isin(np.asarray(profiles["id"]), keep_ids)]
        profiles["id"] = [new_id[int(i)] for i in profiles["id"]]
    return table, profiles


def find_trails_in(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    mask: bool = True,
    site: Site | tuple[float, float, float] | None = None,
    time: Time | str | None = None,
    calibration: bool | None = None,
    stem: str | None = None,
) -> tuple[Table, Path | None]:
    """Find the meteor trails of one exposure and write its tables and figures.

    Written to ``out_dir`` (``STEM`` = the file name up to its first dot):
    ``STEM.trails.ecsv`` (the trails), ``STEM.trails_profile.ecsv`` (their
    brightness profiles along their length: ``id``, ``s``, ``x``, ``y``,
    ``flux``, ``saturated``, ``star``) and ``STEM.trails.png`` (the overlay:
    trails in green, the areas not searched tinted red; below it the
    profiles, saturated bins marked).

    Parameters
    ----------
    path : path
        An image file (read with :func:`skysift.io.read_frame`).
    out_dir : path, optional
        Output folder; None writes nothing.
    mask : bool, optional
        Mask what is not open sky first (fisheye ring, trees and buildings,
        the Moon's glare, captions: :func:`skysift.detection.masks.scene_mask`).
        Default True; False searches the whole frame.
    site : Site or (lat, lon, height_m), optional
        Observing site, for the calibration.
    time : astropy.time.Time or str, optional
        Start of the exposure (UTC), for the calibration.
    calibration : bool, optional
        Calibrate the frame (:func:`skysift.calibration.pipeline.calibrate`,
        ``mode="auto"``) to add RA/Dec (and alt/az for an all-sky camera)
        of the trails' ends. Default: when ``site`` or ``time`` is given.
        A failed calibration leaves the columns out, with a warning.
    stem : str, optional
        ``STEM`` of the output files (default the file name up to its first
        dot; the CLI gives unique names when two inputs share a stem,
        :func:`skysift.outputs.files.output_stems`).

    Returns
    -------
    table : astropy.table.Table
        From :func:`skysift.bolide.trails.find_trails_and_profiles`, with
        the file name in ``meta["file"]`` and the sky columns when calibrated.
    written : Path or None
        The trails ECSV file.

    Raises
    ------
    InputError
        For an unreadable file (named).
    """
    frame = read_frame(path)
    data = np.asarray(frame.data, dtype=np.float32)
    parts = scene_mask(data) if mask else None
    sky = ~parts.mask if parts is not None else np.ones(data.shape, bool)
    table, profiles = find_trails_and_profiles(data, sky=sky)
    if parts is not None and parts.circle is not None:
        table, profiles = drop_rim_tangents(table, profiles, parts.circle)
    name = Path(path).name
    table.meta["file"] = name
    table.meta["mask"] = bool(mask)
    profiles.meta["file"] = name
    if calibration is None:
        calibration = site is not None or time is not None
    if calibration:
        try:
            cal = calibrate(frame, site=site, time=time, mode="auto")
        except SkysiftError as err:
            msg = f"{name}: not calibrated, trails without RA/Dec: {err}"
            warnings.warn(msg, UserWarning, stacklevel=2)
        else:
            add_sky_coordinates(table, cal)
    if out_dir is None:
        return table, None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or name.split(".")[0]
    ecsv = write_table(table, out / f"{stem}.trails.ecsv")
    write_table(profiles, out / f"{stem}.trails_profile.ecsv")
    _plot(data, table, profiles, ~sky, out / f"{stem}.trails.png", name)
    return table, ecsv


def _plot(
    image: np.ndarray, table: Table, profiles: Table, masked: np.ndarray, path: Path, title: str
) -> Path:
    """The overlay (trails in green, the mask tinted red) above the trails' profiles."""
    h, w = image.shape
    img_h = 10 * h / w
    fig = Figure(figsize=(10, img_h + 0.5 + 3.2), dpi=100)
    total = img_h + 0.5 + 3.2
    ax = fig.add_axes((0, 3.2 / total, 1, img_h / total))
    ax.imshow(display_stretch(image), cmap="gray", origin="upper")
    if masked.any():
        tint = np.zeros((h, w, 4), np.float32)
        tint[masked] = (1.0, 0.0, 0.0, 0.25)
        ax.imshow(tint, origin="upper")
    for r in table:
        ax.plot([r["x1"], r["x2"]], [r["y1"], r["y2"]], "-", color="lime", lw=3, alpha=0.35)
        ax.annotate(
            f"#{r['id']} {r['length']:.0f} px, SNR {r['snr']:.1f}"
            + (" (saturated)" if r["saturated"] else ""),
            (r["x2"], r["y2"]), xytext=(15, 15), textcoords="offset points", color="lime",
            fontsize=10,
        )  # fmt: skip
    ax.set_title(f"{title}: {len(table)} meteor trail(s); not searched (not sky) in red")
    ax.set_axis_off()
    _plot_profiles(fig.add_axes((0.08, 0.55 / total, 0.9, 2.3 / total)), profiles)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _plot_profiles(ax: Any, profiles: Table) -> None:
    ids = np.unique(np.asarray(profiles["id"])) if len(profiles) else []
    for i in ids:
        p = profiles[profiles["id"] == i]
        s, f = np.asarray(p["s"]), np.asarray(p["flux"])
        (line,) = ax.plot(s, f, "-", lw=1.2, label=f"trail {i}")
        sat = np.asarray(p["saturated"], bool)
        if sat.any():
            ax.plot(s[sat], f[sat], "v", color=line.get_color(), ms=4)
    if len(ids):
        ax.legend(fontsize=8, title="v: saturated (a lower limit)", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no trail", transform=ax.transAxes, ha="center")
    ax.set_xlabel("position along the trail from (x1, y1) (px)")
    ax.set_ylabel(f"ADU per {profiles.meta.get('bin_px', 2.0):g}-px bin")
    ax.set_title("brightness along the trails (background subtracted)", fontsize=10)
