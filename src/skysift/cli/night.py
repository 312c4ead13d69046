"""The ``skysift night`` command (the batch options and ending live in :mod:`skysift.cli.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skysift.batch.night import run_night
from skysift.cli.app import OutOpt, SchedulerOpt, SiteOpt, WorkersOpt, app, echo_err, finish_batch
from skysift.errors import InputError
from skysift.outputs import ensure_out_dir

__all__ = ["night"]


@app.command()
def night(
    folder: Annotated[
        Path,
        typer.Argument(help="The night's folder: clips (videos) and frames (FITS, images)."),
    ],
    site: SiteOpt = None,
    out: OutOpt = None,
    bolide_method: Annotated[
        str, typer.Option("--bolide-method", help="Bolide segmenter: auto, unet or classical.")
    ] = "auto",
    streaks_method: Annotated[
        str,
        typer.Option("--streaks-method", help="Streak finder: learned, classical, hough or radon."),
    ] = "learned",
    mode: Annotated[
        str, typer.Option(help="Calibration: auto, allsky (fisheye model) or narrow.")
    ] = "auto",
    overlays: Annotated[
        bool, typer.Option("--overlays/--no-overlays", help="Write the bolide overlays.")
    ] = True,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """A night in one command: calibrate each camera once, search clips for bolides, frames for trails and streaks.

    Frames are grouped by camera (folder and image size); each camera is
    calibrated on its middle frame (--out/calibration/) and the calibration is
    reused for its frames and clips. A narrow-field camera whose star field
    moved (more than 5 px, or 0.5 % of the diagonal) starts a new pointing,
    calibrated on its own middle frame (--out/calibration/pointings/); an
    all-sky model is tied to the ground and serves the whole night. Writes one subfolder per input, run.ecsv
    and index.html in --out; a rerun skips the inputs already done. Exit code 5
    when some inputs failed, 2 when all did.
    """

    if not folder.is_dir():  # before --out is made
        msg = f"{folder}: not a folder (skysift night takes the folder of a night's data)"
        raise InputError(msg)
    out_dir = ensure_out_dir(out, f"night-{folder.resolve().name}")
    result = run_night(
        folder, out_dir, site=site, bolide_method=bolide_method, streaks_method=streaks_method,
        mode=mode, overlays=overlays, workers=workers, scheduler=scheduler, echo=typer.echo,
    )  # fmt: skip
    if result.calibration is not None:
        for row in result.calibration.rows:
            if row["status"] == "failed":
                echo_err(f"skysift: warning: calibration failed: {row['input']}: {row['error']}")
        typer.echo(f"{len(result.cameras)} of {len(result.calibration.rows)} cameras calibrated")
    typer.echo(f"index: {result.index}")
    finish_batch(result.summary)
