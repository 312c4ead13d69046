"""Commands of the bolide system: bolide, trails, demo, train/evaluate bolide."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from astropy.time import Time

from skysift.batch.night import is_batch_of_clips, is_folder_or_glob
from skysift.bolide.demo import run_demo
from skysift.bolide.gmn_export import skyfit_ecsv_name, write_skyfit_ecsv
from skysift.bolide.pipeline import run_bolide
from skysift.bolide.science import peak_wording
from skysift.bolide.trails_pipeline import find_trails_in
from skysift.cli.app import (
    OutOpt,
    SchedulerOpt,
    SiteOpt,
    TimeOpt,
    WorkersOpt,
    app,
    batch_command,
    echo_err,
    evaluate_app,
    stage_bar,
    train_app,
)
from skysift.errors import InputError, NoDetectionsWarning
from skysift.io.readers import FITS_SUFFIXES
from skysift.io.video import VIDEO_SUFFIXES
from skysift.outputs import ensure_out_dir, write_table
from skysift.outputs.files import output_stems, prepared_out_dir
from skysift.simulation.generate import load_config

#: Files taken as clips from folders and globs by ``skysift bolide``: videos and FITS cubes.
CLIP_FILES = (*VIDEO_SUFFIXES, *FITS_SUFFIXES)


def _bolide_summary(result) -> str:  # noqa: ANN001
    lc = result.lightcurve
    kind = next((m for m in result.messages if m.startswith("kind:")), None)
    if not result.found:
        rejected = getattr(result, "rejected", None)
        if rejected is not None and len(rejected) and kind:
            return f"no bolide found (the moving object's {kind})"
        return "no bolide found"
    return (
        f"bolide tracked in {len(lc)} frames ({int(np.sum(lc['saturated']))} saturated), "
        f"{peak_wording(lc)}; segmenter {result.method}" + (f"; {kind}" if kind else "")
    )


@app.command()
def bolide(
    videos: Annotated[
        list[Path],
        typer.Argument(
            help="Video (mp4/avi/mkv/mov), folder of frames or FITS cube; several clips, a "
            "folder of videos or a quoted glob ('night/*.mp4') run one task per clip.",
            metavar="VIDEO",
        ),
    ],
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration", help="Calibration image (default: median stack of the video)."
        ),
    ] = None,
    site: SiteOpt = None,
    time: TimeOpt = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Frame rate (frames/s).")] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs",
            help="Manual identifications on the calibration image: CSV/ECSV with x, y, star (>= 4).",
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="Segmenter: auto (U-Net when installed), unet or classical.")
    ] = "auto",
    height_km: Annotated[
        float | None,
        typer.Option(
            "--height-km",
            help="Height of the meteor (km above sea level): adds the absolute magnitude "
            "(at 100 km) to the light curve and the report.",
        ),
    ] = None,
    platepar: Annotated[
        Path | None,
        typer.Option(
            "--platepar",
            help="A GMN/RMS station's calibration (platepar_cmn2010.cal): RA/Dec and alt/az "
            "of the head from it.",
        ),
    ] = None,
    skyfit: Annotated[
        bool,
        typer.Option(
            "--skyfit/--no-skyfit",
            help="Also write the light curve in SkyFit2's ECSV layout (for trajectory solvers).",
        ),
    ] = False,
    station_code: Annotated[
        str, typer.Option("--station-code", help="Station code for the SkyFit2 ECSV.")
    ] = "skysift",
    interlaced: Annotated[
        str,
        typer.Option(
            "--interlaced",
            help="Interlaced analogue video: no (progressive), tff (top field first) or bff "
            "(bottom field first); each field becomes a time sample of its own.",
        ),
    ] = "no",
    out: OutOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Calibrated light curve of the bolide in a meteor-camera video.

    Several clips, a folder of videos or a glob (or --workers/--scheduler):
    one task per clip on the batch layer, one subfolder per clip and the
    manifest run.ecsv in --out; a rerun skips the clips already done (exit
    code 5 when some failed, 2 when all did). A folder of image frames is one clip.
    """

    if is_batch_of_clips(videos) or workers is not None or scheduler is not None:
        params = {
            "calibration": None if calibration is None else str(calibration),
            "site": None if site is None else list(site), "time": time, "fps": fps,
            "pairs": None if pairs is None else str(pairs), "method": method,
            "height_km": height_km, "platepar": None if platepar is None else str(platepar),
            "interlaced": interlaced,
        }  # fmt: skip
        batch_command(
            videos,
            ensure_out_dir(out, "bolide"),
            "bolide",
            params,
            workers=workers,
            scheduler=scheduler,
            suffixes=CLIP_FILES,
        )
        return
    video = videos[0]
    # a run that fails before writing anything leaves no empty folder behind
    with (
        prepared_out_dir(out, video.stem) as out_dir,
        stage_bar() as progress,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always", NoDetectionsWarning)
        result = run_bolide(
            video, out_dir, calibration=calibration, site=site, time=time, fps=fps,
            pairs=pairs, method=method, height_km=height_km, platepar=platepar,
            interlaced=interlaced, progress=progress,
        )  # fmt: skip
        if skyfit and result.found:
            try:
                lc = result.lightcurve
                name = skyfit_ecsv_name(Time(str(lc["time"][0]), scale="utc"), station_code)
                path = write_skyfit_ecsv(
                    result, out_dir / name, station=station_code, site=result.site,
                    image_file=video.name,
                )  # fmt: skip
                result.files["skyfit"] = path
            except (InputError, ValueError) as err:  # uncalibrated, no times or no site
                warnings.warn(f"no SkyFit2 ECSV written: {err}", NoDetectionsWarning, stacklevel=1)
    for w in caught:
        echo_err(f"skysift: warning: {w.message}")
    typer.echo(_bolide_summary(result))
    typer.echo(f"report: {result.files.get('report', out_dir)}")


@app.command()
def trails(
    images: Annotated[
        list[Path],
        typer.Argument(help="Single long exposures, folders of them or quoted globs."),
    ],
    out: OutOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    mask: Annotated[
        bool,
        typer.Option(
            "--mask/--no-mask",
            help="Mask what is not open sky first: fisheye ring, trees and buildings, "
            "the Moon's glare, captions (written as STEM.trails_mask.png).",
        ),
    ] = True,
    site: SiteOpt = None,
    time: TimeOpt = None,
) -> None:
    """Meteor trails in single long exposures (one table per image).

    With --site and --time each image is also calibrated (as `skysift
    calibrate` does) and the trails' ends get RA/Dec (and alt/az for an
    all-sky camera); if that fails, the table is written without them.

    Image files: their tables go to --out, one after the other. A folder or a
    glob (or --workers/--scheduler): one task per image on the batch layer, one
    subfolder per image and the manifest run.ecsv in --out; a rerun skips the
    images already done (exit code 5 when some failed, 2 when all did).
    """

    if workers is not None or scheduler is not None or any(is_folder_or_glob(p) for p in images):
        params: dict = {} if mask else {"mask": False}
        if site is not None:
            params["site"] = list(site)
        if time is not None:
            params["time"] = time
        batch_command(
            images,
            ensure_out_dir(out, "trails"),
            "trails",
            params,
            workers=workers,
            scheduler=scheduler,
        )
        return

    # a run that fails before writing anything leaves no empty folder behind
    with prepared_out_dir(out, "trails") as out_dir:
        # unique names when two inputs share a stem (x.fits and x.png, a/x.fits and b/x.fits)
        for path, stem in zip(images, output_stems(images), strict=True):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                table, written = find_trails_in(
                    path, out_dir, mask=mask, site=site, time=time, stem=stem
                )
            for w in caught:
                echo_err(f"skysift: warning: {w.message}")
            typer.echo(f"{path.name}: {len(table)} trail(s) -> {written}")
            for r in table:
                sky = (
                    f", RA/Dec ({r['ra1']:.2f}, {r['dec1']:+.2f}) -> ({r['ra2']:.2f}, {r['dec2']:+.2f}) deg"
                    if "ra1" in table.colnames
                    else ""
                )
                typer.echo(
                    f"  #{r['id']} ({r['x1']:.0f}, {r['y1']:.0f}) -> ({r['x2']:.0f}, {r['y2']:.0f}), "
                    f"{r['length']:.0f} px, SNR {r['snr']:.1f}"
                    + (", saturated" if r["saturated"] else "")
                    + (f", {r['n_pieces']} pieces joined" if r["n_pieces"] > 1 else "")
                    + sky
                )


@app.command()
def demo(
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default ./skysift-demo/).")
    ] = None,
) -> None:
    """Run the main job on bundled real data: a bolide light curve and a real meteor trail.

    A bolide with a known light curve (flare, saturated frames) is injected by
    the simulator into the real MAGIC all-sky frame of 2018-08-17 03:41 UT;
    its calibrated light curve is measured and compared with the truth. Then
    the real UMD frame Meteor-20191028.png is searched for meteor trails.
    """

    out_dir = out if out is not None else Path.cwd() / "skysift-demo"
    with stage_bar() as progress:
        summary = run_demo(out_dir, progress=progress, echo=typer.echo)
    typer.echo(f"report: {summary['report']}")


@train_app.command("bolide")
def train_bolide_cmd(
    out: OutOpt = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="JSON recipe overriding the shipped one.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of weights, training tiles and evaluation.")
    ] = 0,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Folder to keep and reuse the rendered tiles.")
    ] = None,
) -> None:
    """Reproduce the shipped bolide-segmenter weights (about 30 minutes on 2 cores)."""
    # needs torch (the learn extra): imported on use
    from skysift.bolide.training import train_bolide

    out_dir = ensure_out_dir(out, "train-bolide")
    _, card = train_bolide(load_config(config) or None, out=out_dir, seed=seed, cache_dir=cache)
    for name, m in card.get("metrics", {}).get("held_out_clips", {}).items():
        typer.echo(f"{name}: precision {m['precision']}, recall {m['recall']}")
    typer.echo(f"weights -> {out_dir}")


@evaluate_app.command("bolide")
def evaluate_bolide_cmd(
    weights: Annotated[
        str, typer.Option("--weights", help="Registered weights name or a .safetensors file.")
    ] = "bolide_unet",
    n_clips: Annotated[int, typer.Option("--n-clips", help="Held-out composite clips.")] = 48,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the evaluation clips.")] = 1000,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Probability cut (default: the weights' own)."),
    ] = None,
    out: OutOpt = None,
) -> None:
    """Learned vs classical bolide masks on held-out composite clips: pixel precision and recall."""
    # needs torch (the learn extra): imported on use
    from skysift.bolide.training import evaluate_bolide

    table = evaluate_bolide(weights, seed=seed, n_clips=n_clips, threshold=threshold)
    out_dir = ensure_out_dir(out, "evaluate-bolide")
    write_table(table, out_dir / "bolide_segmenter_metrics.ecsv")
    for row in table:
        typer.echo(
            f"{row['method']:<10} {row['bin_kind']:<7} {row['bin']:<12} precision "
            f"{row['precision']:.3f}  recall {row['recall']:.3f}  frames {row['n_frames']}"
        )
    typer.echo(f"outputs: {out_dir}")
