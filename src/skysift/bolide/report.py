"""Files of a bolide analysis: light curve (ECSV, PNG), motion zone, per-frame overlays, HTML report.

Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from matplotlib.figure import Figure

from skysift.bolide.science import peak_wording, science_summary, time_axis_label
from skysift.calibration.report import write_calibration
from skysift.outputs.files import atomic_path, write_json, write_table, write_with

if TYPE_CHECKING:
    from skysift.bolide.pipeline import BolideResult

__all__ = [
    "peak_magnitude",
    "peak_text",
    "plot_light_curve",
    "plot_motion_zone",
    "write_bolide",
    "write_overlays",
    "write_report",
]


def _stretch(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = np.clip((np.nan_to_num(image, nan=lo) - lo) / max(hi - lo, 1e-9), 0, 1)
    return (255 * np.arcsinh(10 * scaled) / np.arcsinh(10)).astype(np.uint8)


def _levels(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite[:: max(1, finite.size // 200_000)], [5, 99.7])
    return float(lo), float(hi)


def _save_png(rgb: np.ndarray, path: Path) -> Path:
    def _w(tmp: Path) -> None:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - OpenCV failure
            msg = f"could not encode {path}"
            raise OSError(msg)
        tmp.write_bytes(buf.tobytes())

    return write_with(path, _w)


def plot_light_curve(result: BolideResult, path: str | Path, *, truth=None) -> Path:
    """Magnitude against time, magnitude axis inverted, saturated frames as bright limits.

    Parameters
    ----------
    result : BolideResult
    path : str or Path
        Output PNG.
    truth : Table, optional
        Columns ``t`` and ``mag`` of an injected light curve, drawn as a line.

    Returns
    -------
    Path
    """

    lc = result.lightcurve
    fig = Figure(figsize=(8, 4.5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    calibrated = len(lc) > 0 and np.isfinite(np.asarray(lc["mag"], float)).any()
    col = "mag" if calibrated else "inst_mag"
    if len(lc):
        t = np.asarray(lc["t"], float)
        m = np.asarray(lc[col], float)
        e = np.asarray(lc["mag_err"], float) if calibrated else None
        sat = np.asarray(lc["saturated"], bool)
        ok = ~sat
        ax.errorbar(t[ok], m[ok], yerr=None if e is None else e[ok], fmt="o", ms=4, color="C0",
                    capsize=2, label="measured")  # fmt: skip
        if sat.any():
            ax.plot(t[sat], m[sat], "^", color="C3", ms=7, mfc="none",
                    label="saturated (bright limit)")  # fmt: skip
    if truth is not None and len(truth):
        ax.plot(truth["t"], truth["mag"], "-", color="0.4", lw=1, label="injected")
    ax.invert_yaxis()
    ax.set_xlabel(time_axis_label(lc))
    ax.set_ylabel("magnitude" if calibrated else "instrumental magnitude")
    ax.set_title("bolide light curve" if len(lc) else "no bolide found")
    ax.grid(alpha=0.3)
    if len(lc) or truth is not None:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def plot_motion_zone(result: BolideResult, background: np.ndarray, path: str | Path) -> Path:
    """The median frame with the motion heat map, the motion zone and the fitted path.

    Returns
    -------
    Path
    """
    grey = _stretch(background, *_levels(background))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    heat = result.motion.heat
    if heat.max() > 0:
        hm = np.clip(heat / np.percentile(heat[heat > 0], 99), 0, 1)
        colour = cv2.applyColorMap((255 * hm).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
        a = (0.75 * hm)[..., None]
        rgb = (rgb * (1 - a) + colour * a).astype(np.uint8)
    thick = max(1, round(max(rgb.shape) / 700))
    if result.motion.roi is not None:
        x0, y0, x1, y1 = result.motion.roi
        cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), (255, 220, 0), thick)
    lc = result.lightcurve
    if len(lc) > 1:
        pts = np.column_stack([lc["x"], lc["y"]]).round().astype(np.int32)
        cv2.polylines(rgb, [pts], False, (0, 255, 0), thick)
    return _save_png(rgb, Path(path))


def _overlay(
    frame: np.ndarray,
    mask: np.ndarray | None,
    head: tuple[float, float] | None,
    roi: tuple[int, int, int, int] | None,
    crop: tuple[int, int, int, int],
    levels: tuple[float, float],
    label: str,
) -> np.ndarray:
    x0, y0, x1, y1 = crop
    grey = _stretch(frame[y0:y1, x0:x1], *levels)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if mask is not None:
        m = mask[y0:y1, x0:x1]
        red = np.zeros_like(rgb)
        red[..., 0] = 255
        rgb = np.where(m[..., None], (0.55 * rgb + 0.45 * red).astype(np.uint8), rgb)
    scale = max(1, round(480 / max(rgb.shape[:2])))
    if scale > 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    if roi is not None:
        rx0, ry0, rx1, ry1 = roi
        cv2.rectangle(rgb, ((rx0 - x0) * scale, (ry0 - y0) * scale),
                      ((rx1 - x0) * scale - 1, (ry1 - y0) * scale - 1), (255, 220, 0), 1)  # fmt: skip
    if head is not None and np.all(np.isfinite(head)):
        hx, hy = round((head[0] - x0 + 0.5) * scale), round((head[1] - y0 + 0.5) * scale)
        cv2.drawMarker(rgb, (hx, hy), (0, 255, 0), cv2.MARKER_CROSS, 6 * scale + 8, 2)
    cv2.putText(rgb, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return rgb


def write_overlays(
    result: BolideResult,
    cube: np.ndarray,
    out_dir: str | Path,
    *,
    video: bool = True,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Path]:
    """Per-frame overlays of the segmented frames: mask (red), head (green cross), motion zone (yellow).

    The images are cut to the motion zone with a margin (the bolide report's
    Fig. 31). With ``video`` and imageio-ffmpeg installed they are also
    joined into ``overlays.mp4``.

    Returns
    -------
    dict
        ``"overlays"`` -> the folder, and ``"overlay_video"`` -> the MP4 when written.
    """
    out = Path(out_dir) / "overlays"
    out.mkdir(parents=True, exist_ok=True)
    h, w = cube.shape[1:]
    roi = result.motion.roi
    if roi is None:
        return {"overlays": out}
    x0, y0, x1, y1 = roi
    pad = 40
    crop = (max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad))
    levels = _levels(result.background[crop[1] : crop[3], crop[0] : crop[2]])
    heads = {int(r["frame"]): (float(r["x"]), float(r["y"])) for r in result.lightcurve}
    frames = sorted(result.masks)
    images = []
    for k, i in enumerate(frames):
        label = f"frame {i}" + ("  head" if i in heads else "")
        rgb = _overlay(cube[i], result.masks.get(i), heads.get(i), roi, crop, levels, label)
        _save_png(rgb, out / f"frame_{i:04d}.png")
        images.append(rgb)
        if progress is not None:
            progress((k + 1) / len(frames))
    files: dict[str, Path] = {"overlays": out}
    if video and images:
        try:
            # the optional video extra: imported on use
            import imageio.v2 as imageio

            path = Path(out_dir) / "overlays.mp4"
            even = [im[: im.shape[0] // 2 * 2, : im.shape[1] // 2 * 2] for im in images]
            with atomic_path(path) as tmp:
                imageio.mimwrite(tmp, even, fps=min(10.0, result.fps), format="FFMPEG",  # type: ignore[arg-type]
                                 codec="libx264", macro_block_size=1)  # fmt: skip
            files["overlay_video"] = path
        except Exception:  # noqa: BLE001 - the MP4 is optional (needs imageio-ffmpeg)
            pass
    return files


def peak_magnitude(lightcurve) -> tuple[float | None, float | None]:  # noqa: ANN001
    """``(peak, limit)``: the brightest measured magnitude (unsaturated frames) and the
    brightest bright limit of the saturated frames (None when there is none)."""
    if len(lightcurve) == 0:
        return None, None
    mag = np.asarray(lightcurve["mag"], float)
    sat = np.asarray(lightcurve["saturated"], bool)
    ok = np.isfinite(mag)
    peak = float(np.min(mag[ok & ~sat])) if np.any(ok & ~sat) else None
    limit = float(np.min(mag[ok & sat])) if np.any(ok & sat) else None
    return peak, limit


def peak_text(lightcurve) -> str:  # noqa: ANN001
    """``"peak magnitude -1.06 (brighter than -1.87 in saturated frames)"`` or ``"uncalibrated"``."""
    peak, limit = peak_magnitude(lightcurve)
    if peak is None and limit is None:
        return "uncalibrated"
    out = f"peak magnitude {peak:.2f}" if peak is not None else "all frames saturated"
    if limit is not None and (peak is None or limit < peak):
        out += f" (brighter than {limit:.2f} in saturated frames)"
    return out


def _summary(result: BolideResult) -> dict[str, Any]:
    lc = result.lightcurve
    cal = result.calibration
    d: dict[str, Any] = {
        "found": result.found,
        "method": result.method,
        "n_frames": result.n_frames,
        "fps": result.fps,
        "n_head_frames": len(lc),
        "n_saturated": int(np.sum(lc["saturated"])) if len(lc) else 0,
        "motion_zone": list(result.motion.roi) if result.motion.roi is not None else None,
        "noise_adu": result.noise,
        "saturation_adu": result.saturation,
        "messages": result.messages,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }
    if len(lc):
        d["peak_mag"], d["peak_mag_limit"] = peak_magnitude(lc)
        d["start_time"] = str(lc["time"][0]) or None
        d["duration_s"] = float(lc["t"][-1] - lc["t"][0])
    if result.trajectory is not None:
        d["direction_deg"] = result.trajectory.angle_deg
    d["science"] = science_summary(result)
    if cal is not None:
        d["calibration"] = {
            "model_type": cal.model_type,
            "n_matched": cal.n_matched,
            "astrometric_rms_px": cal.astrometric_rms_px,
            "zero_point": None if cal.zero_point is None else float(cal.zero_point.zero_point),
            "zero_point_err": None
            if cal.zero_point is None
            else float(cal.zero_point.zero_point_err),
            "photometric_rms_mag": None
            if cal.zero_point is None
            else float(cal.zero_point.rms_mag),
        }
    return d


def write_report(
    result: BolideResult,
    out_dir: str | Path,
    files: dict[str, Path],
    *,
    extra: str = "",
    title: str = "skysift bolide report",
) -> Path:
    """``report.html``: the light curve, motion zone, calibration and overlays in one page.

    Images are linked by relative paths, so the folder can be moved as a whole.

    Parameters
    ----------
    extra : str, optional
        HTML inserted after the summary (e.g. the demo's truth comparison).
    """
    out = Path(out_dir)
    s = _summary(result)
    lc = result.lightcurve

    def rel(key: str) -> str | None:
        p = files.get(key)
        return html.escape(Path(p).relative_to(out).as_posix()) if p is not None else None

    rows = []
    for r in lc:
        mag = "" if not np.isfinite(r["mag"]) else f"{r['mag']:.2f}"
        err = "" if not np.isfinite(r["mag_err"]) else f"{r['mag_err']:.2f}"
        sat = "bright limit" if r["saturated"] else ""
        rows.append(
            f"<tr><td>{r['frame']}</td><td>{html.escape(str(r['time']))}</td><td>{r['t']:.3f}</td>"
            f"<td>{r['x']:.1f}</td><td>{r['y']:.1f}</td><td>{r['alt']:.2f}</td><td>{r['az']:.2f}</td>"
            f"<td>{r['flux']:.4g}</td><td>{mag}</td><td>{err}</td><td>{sat}</td></tr>"
        )
    cal = s.get("calibration")
    cal_html = "<p>Calibration failed: magnitudes are instrumental.</p>"
    if cal:
        zp = (
            "n/a"
            if cal["zero_point"] is None
            else f"{cal['zero_point']:.3f} &plusmn; {cal['zero_point_err']:.3f}"
        )
        cal_html = (
            f"<p>{cal['model_type']} camera model from {cal['n_matched']} identified stars, "
            f"astrometric RMS {cal['astrometric_rms_px']:.2f} px; zero point {zp} mag, "
            f"photometric scatter {cal['photometric_rms_mag'] or float('nan'):.3f} mag.</p>"
        )
    imgs = []
    for key, caption in (
        ("lightcurve_png", "Light curve"),
        ("motion_zone", "Motion heat map, motion zone (yellow) and head track (green)"),
        ("calibration_plot", "Calibration: identified stars"),
    ):
        if rel(key):
            imgs.append(
                f'<figure><img src="{rel(key)}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
            )
    overlay_links = ""
    ov = files.get("overlays")
    if ov is not None:
        names = sorted(p.name for p in Path(ov).glob("frame_*.png"))
        heads = {f"frame_{int(r['frame']):04d}.png" for r in lc}
        thumbs = [
            f'<a href="overlays/{n}"><img class="thumb{" head" if n in heads else ""}" '
            f'src="overlays/{n}" alt="{n}"></a>'
            for n in names
        ]
        overlay_links = "<h2>Frames (mask red, head green, motion zone yellow)</h2>" + "".join(
            thumbs
        )
    downloads = " &middot; ".join(
        f'<a href="{rel(k)}">{html.escape(Path(files[k]).name)}</a>'
        for k in ("lightcurve", "lightcurve_png", "calibration", "overlay_video", "summary")
        if k in files
    )
    msgs = "".join(f"<li>{html.escape(m)}</li>" for m in result.messages)
    headline = (
        f"Bolide tracked in {s['n_head_frames']} frames ({s['n_saturated']} saturated); "
        f"{peak_wording(lc)}"
        if result.found
        else "No bolide found"
    )
    sci_html = _science_html(s["science"])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}}
figure{{margin:1em 0}} img{{max-width:100%}} figcaption{{color:#555;font-size:90%}}
table{{border-collapse:collapse;font-size:85%}} td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
.thumb{{width:160px;margin:2px;border:2px solid #ddd}} .thumb.head{{border-color:#2a2}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p><b>{html.escape(headline)}</b>. Segmenter: {html.escape(result.method)}; {result.n_frames} frames at {result.fps:g} fps.</p>
<p>Files: {downloads}</p>
{cal_html}
{sci_html}
{"<ul>" + msgs + "</ul>" if msgs else ""}
{extra}
{"".join(imgs)}
<h2>Light curve</h2>
<table><tr><th>frame</th><th>time (UTC)</th><th>t (s)</th><th>x</th><th>y</th><th>alt</th><th>az</th>
<th>flux (ADU)</th><th>mag</th><th>mag err</th><th></th></tr>
{"".join(rows)}</table>
{overlay_links}
<p style="color:#777;font-size:80%">skysift; summary in <code>summary.json</code>.</p>
</body></html>
"""
    path = out / "report.html"
    write_with(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


def _science_html(sci: dict[str, Any]) -> str:
    """The meteor-science lines of the report: site, camera, timing, speed, direction, peak."""

    def f(v, fmt: str = ".2f", unit: str = "") -> str:
        return "n/a" if v is None else f"{v:{fmt}}{unit}"

    site = sci.get("site")
    site_txt = (
        "unknown (give --site LAT LON HEIGHT_M)"
        if site is None
        else f"lat {site['lat_deg']:.4f}&deg;, lon {site['lon_deg']:.4f}&deg;, {site['height_m']:.0f} m"
    )
    cam = sci.get("camera")
    if cam is None:
        cam_txt = "none (calibration failed)"
    elif "x0" in cam:
        cam_txt = (
            f"{html.escape(str(cam.get('projection', 'equidistant')))} fisheye "
            f"({html.escape(str(cam.get('method')))} fit): zenith pixel ({cam['x0']:.1f}, {cam['y0']:.1f}), "
            f"radial {', '.join(f'{k:.2f}' for k in cam['radial_px'])} px/rad, north at "
            f"{cam['rotation_deg']:.1f}&deg;, parity {cam['parity']:+d}"
        )
    else:
        cam_txt = html.escape(str(cam.get("model_type")))
    rows = [
        ("Site", site_txt),
        ("Camera model", cam_txt),
        ("Peak", html.escape(sci.get("peak_text", ""))),
        ("Onset (UTC)", html.escape(str(sci.get("onset_utc") or "unknown (give --time)"))),
        ("Duration", f(sci.get("duration_s"), ".2f", " s")),
        ("Angular speed", f(sci.get("angular_speed_deg_s"), ".2f", " deg/s")),
        ("Direction of motion", f"position angle {f(sci.get('position_angle_deg'), '.1f', '&deg;')} "
         f"(east of north); azimuth of motion {f(sci.get('azimuth_of_motion_deg'), '.1f', '&deg;')}"),
    ]  # fmt: skip
    if sci.get("height_km") is not None:
        rows.append(
            (
                f"Absolute magnitude (100 km; meteor at {sci['height_km']:g} km)",
                f"peak measured (unsaturated) {f(sci.get('abs_peak_measured_mag'))}; saturated: "
                f"brighter than {f(sci.get('abs_saturated_brighter_than_mag'))}",
            )
        )
    body = "".join(
        f"<tr><td style='text-align:left'>{k}</td><td style='text-align:left'>{v}</td></tr>"
        for k, v in rows
    )
    return f"<h2>Meteor</h2><table>{body}</table>"


def write_bolide(
    result: BolideResult,
    cube: np.ndarray,
    out_dir: str | Path,
    *,
    overlays: bool = True,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Path]:
    """Write every output of a bolide analysis into ``out_dir``.

    Files: ``lightcurve.ecsv``, ``lightcurve.png``, ``motion_zone.png``,
    ``overlays/frame_NNNN.png`` (+ ``overlays.mp4``), the calibration's
    files (``calibration.json``, ``calibration.png``, ``stars.ecsv``,
    ``matches.ecsv``), ``summary.json`` and ``report.html``.

    Returns
    -------
    dict
        File role -> path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"lightcurve": write_table(result.lightcurve, out / "lightcurve.ecsv")}
    files["lightcurve_png"] = plot_light_curve(result, out / "lightcurve.png")
    files["motion_zone"] = plot_motion_zone(result, result.background, out / "motion_zone.png")
    if result.calibration is not None:
        cal_files = write_calibration(result.calibration, out)
        files["calibration"] = cal_files["calibration"]
        if "plot" in cal_files:
            files["calibration_plot"] = cal_files["plot"]
    if overlays:
        files.update(write_overlays(result, cube, out, progress=progress))
    files["summary"] = write_json(json.loads(json.dumps(_summary(result), default=float)),
                                  out / "summary.json")  # fmt: skip
    files["report"] = write_report(result, out, files)
    return files
