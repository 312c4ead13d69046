"""The demo: a bolide injected into a real all-sky frame, and a real meteor trail in one exposure.

:func:`demo_inputs` builds the bundled bolide sample on the fly: the real
MAGIC all-sky frame of 2018-08-17 03:38 UT (real stars, sky, noise and
horizon obstructions; never used to train the bolide segmenter) becomes a
25 fps video with fresh noise in every frame, and the simulator
(:class:`skysift.simulation.meteors.MeteorVideo`) injects a bolide moving
along a great circle of the sky (through the frame's own fisheye
calibration) with a known light curve: a rise, a fragmentation flare and
saturated frames at the peak.

The injected magnitudes are on the scale of the frame's photometric
calibration: the frame is calibrated first (zero point, extinction and
radial terms fitted on its stars), the bolide is rendered with that zero
point, and the true magnitude of each frame is the calibration's magnitude
of the injected head flux at the head's true position. The recovered-minus-
injected error therefore measures the segmentation, tracking, photometry and
the re-calibration of the video's median stack, not the zero point's own
error against the catalogue (which ``calibration.json`` reports).

:func:`umd_meteor` runs single-exposure meteor-trail detection on the real
UMD frame ``Meteor-20191028.png``.
"""

from __future__ import annotations

import dataclasses
import html
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from skysift.bolide.evaluation import BolideParams, composite_clip, score_light_curve
from skysift.bolide.pipeline import run_bolide
from skysift.bolide.report import plot_light_curve, write_report
from skysift.bolide.trails_pipeline import find_trails_in
from skysift.calibration.pipeline import calibrate
from skysift.data import sample
from skysift.errors import NoDetectionsWarning
from skysift.io import read_frame
from skysift.io.frame import Site
from skysift.outputs.files import write_json, write_table, write_with

__all__ = ["DemoInputs", "demo_inputs", "score_light_curve"]

#: Bundled background of the bolide demo.
DEMO_BACKGROUND = "magic-allsky-0341"

#: The demo's bolide: 1.05 s across the north-east sky at 28 deg/s, a flare of 1.5 mag.
DEMO_BOLIDE = BolideParams(
    start=(62.0, 115.0), end=(38.0, 160.0), speed=28.0, peak_mag=-1.5, duration_s=1.05,
    peak_fraction=0.65, flares=((0.45, 1.5, 0.03),), t_start_s=0.16, wake_fraction=0.04,
    wake_tau_s=0.06,
)  # fmt: skip


@dataclass
class DemoInputs:
    """The demo's bolide clip and its truth.

    Attributes
    ----------
    video : Path
        FITS cube ``(T, H, W)`` with DATE-OBS, EXPTIME, FPS and site keywords.
    calibration : Path or None
        Calibration image (None: the pipeline's default, the median stack).
    site : Site
    time : astropy.time.Time
        Start of the first frame (UTC).
    fps : float
    truth : astropy.table.Table
        Per frame: ``frame``, ``t`` (s from the first frame), ``x``, ``y``,
        ``alt``, ``az``, ``flux`` (ADU), ``mag`` (true calibrated magnitude;
        inf where the head is not visible), ``saturated``, ``visible``.
    """

    video: Path
    calibration: Path | None
    site: Site
    time: Time
    fps: float
    truth: Table


def demo_inputs(
    work_dir: str | Path,
    *,
    n_frames: int = 40,
    fps: float = 25.0,
    seed: int = 20180817,
    peak_mag: float = -1.5,
) -> DemoInputs:
    """Build the demo's bolide clip into ``work_dir`` (``demo_bolide.fits``, ``demo_truth.ecsv``).

    Parameters
    ----------
    work_dir : str or Path
        Created if missing.
    n_frames : int, optional
        Frames of the clip. Default 40.
    fps : float, optional
        Frame rate. Default 25.
    seed : int, optional
        Noise seed. Default 20180817.
    peak_mag : float, optional
        Peak magnitude of the smooth light curve (the flare adds 1.5 mag).
        Default -1.5.

    Returns
    -------
    DemoInputs

    Raises
    ------
    CalibrationError
        If the bundled frame cannot be calibrated (a broken install).
    """

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    s = sample(DEMO_BACKGROUND)
    frame = read_frame(s.path, site=s.site)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        cal = calibrate(frame)
    params = dataclasses.replace(DEMO_BOLIDE, peak_mag=peak_mag)
    clip = composite_clip(frame, cal, params, n_frames=n_frames, fps=fps, seed=seed)
    truth = clip.truth.copy()
    del truth["mask"]
    truth.meta["description"] = (
        "skysift demo: bolide injected into the MAGIC all-sky frame of 2018-08-17 03:38 UT; "
        "mag = the frame's photometric calibration applied to the injected head flux"
    )
    start = frame.time
    header = fits.Header()
    header["DATE-OBS"] = (start.utc.isot, "start of the first frame, UTC")
    header["EXPTIME"] = (clip.exposure_s, "exposure of one frame, s")
    header["FPS"] = (fps, "frames per second")
    header["SITELAT"] = (s.site.lat, "deg")
    header["SITELONG"] = (s.site.lon, "deg, east positive")
    header["SITEELEV"] = (s.site.height, "m")
    header["SATURATE"] = (clip.saturation, "ADU")
    header["COMMENT"] = "skysift demo: simulated bolide on a real MAGIC all-sky frame"
    path = work / "demo_bolide.fits"
    hdu = fits.PrimaryHDU(clip.cube.astype(np.float32), header=header)
    write_with(path, lambda tmp: hdu.writeto(tmp, overwrite=True))
    write_table(truth, work / "demo_truth.ecsv")
    return DemoInputs(video=path, calibration=None, site=s.site, time=start, fps=fps, truth=truth)


def run_demo(
    out_dir: str | Path,
    *,
    progress=None,  # noqa: ANN001 - callable(stage, fraction)
    echo=print,  # noqa: ANN001 - callable(str)
) -> dict:
    """The demo: build the bolide clip, measure its light curve, score it; find the UMD meteor.

    Parameters
    ----------
    out_dir : str or Path
        Output folder: ``input/`` (clip and truth), ``bolide/`` (the bolide
        outputs, ``report.html`` among them), ``umd_meteor/`` (trail table and
        overlay), ``demo_score.json``.
    progress : callable, optional
        ``progress(stage, fraction)``.
    echo : callable, optional
        Prints a line. Default :func:`print`.

    Returns
    -------
    dict
        The light-curve score (:func:`score_light_curve`), ``"trail"`` (the
        UMD trail's ends and length or None) and ``"report"`` (path).
    """

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    echo("building the bolide clip on the real MAGIC all-sky frame of 2018-08-17 03:38 UT ...")
    if progress is not None:
        progress("simulate", 0.0)
    inp = demo_inputs(out / "input")
    echo(f"clip: {inp.video} ({len(inp.truth)} frames at {inp.fps:g} fps)")
    result = run_bolide(inp.video, out / "bolide", progress=progress)
    score = score_light_curve(result.lightcurve, inp.truth)
    truth = inp.truth[inp.truth["visible"]]
    t0 = float(result.lightcurve["t"][0]) if len(result.lightcurve) else 0.0
    f0 = int(result.lightcurve["frame"][0]) if len(result.lightcurve) else 0
    # the light curve's t counts from its first frame: align the truth on it
    tt = Table({"t": truth["t"] - (f0 + 0.5) / inp.fps + t0, "mag": truth["mag"]})
    files = dict(result.files)
    plot_light_curve(result, files["lightcurve_png"], truth=tt)
    trail_table, trail_file = find_trails_in(sample("umd-meteor").path, out / "umd_meteor")
    trail = None
    if len(trail_table):
        r = trail_table[0]
        trail = {k: round(float(r[k]), 1) for k in ("x1", "y1", "x2", "y2", "length", "snr")}
    summary = {**score, "segmenter": result.method, "trail": trail}
    write_json(summary, out / "demo_score.json")
    # the bolide report holds the bolide only: the UMD still-frame trail is an unrelated
    # result, in umd_meteor/ and demo_score.json
    extra = _demo_html(score)
    files["report"] = write_report(result, out / "bolide", files, extra=extra,
                                   title="skysift demo: bolide on a real all-sky frame")  # fmt: skip
    echo(
        f"bolide: tracked in {score['n_measured']} of {score['n_truth']} frames with the bolide; "
        f"saturated frames flagged {score['n_saturated_flagged']}/{score['n_saturated_truth']} "
        f"(false flags {score['n_false_saturated']})"
    )
    echo(
        f"recovered - injected magnitude over {score['n_unsaturated']} unsaturated frames: "
        f"RMS {score['rms_mag']:.3f} mag, median |error| {score['median_abs_mag']:.3f}, "
        f"max |error| {score['max_abs_mag']:.3f}, bias {score['bias_mag']:+.3f}"
    )
    if trail is None:
        echo("UMD Meteor-20191028.png: no meteor trail found")
    else:
        echo(
            f"UMD Meteor-20191028.png: meteor trail from ({trail['x1']:.0f}, {trail['y1']:.0f}) "
            f"to ({trail['x2']:.0f}, {trail['y2']:.0f}), {trail['length']:.0f} px, SNR {trail['snr']:.1f}"
        )
    summary["report"] = str(files["report"])
    return summary


def _demo_html(score: dict) -> str:
    rows = "".join(
        f"<tr><td style='text-align:left'>{html.escape(k)}</td><td>{v:.3f}</td></tr>"
        if isinstance(v, float) else f"<tr><td style='text-align:left'>{html.escape(k)}</td><td>{v}</td></tr>"
        for k, v in score.items()
    )  # fmt: skip
    return (
        "<h2>Demo: recovered versus injected</h2><p>The bolide was injected by the simulator "
        "into a real all-sky frame; magnitudes are compared over the unsaturated frames.</p>"
        f"<table>{rows}</table>"
    )
