"""Commands of the bolide system: bolide, trails, demo, train/evaluate bolide."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from skysift.bolide.demo import run_demo
from skysift.bolide.pipeline import run_bolide
from skysift.bolide.report import peak_text
from skysift.bolide.trails_pipeline import find_trails_in
from skysift.cli.app import (
    OutOpt,
    SiteOpt,
    TimeOpt,
    app,
    echo_err,
    evaluate_app,
    stage_bar,
    train_app,
)
from skysift.errors import NoDetectionsWarning
from skysift.outputs import ensure_out_dir, write_table
from skysift.outputs.files import prepared_out_dir
from skysift.simulation.generate import load_config


def _bolide_summary(result) -> str:  # noqa: ANN001
    lc = result.lightcurve
    if not result.found:
        return "no bolide found"

    return (
        f"bolide tracked in {len(lc)} frames ({int(np.sum(lc['saturated']))} saturated), "
        f"{peak_text(lc)}; segmenter {result.method}"
    )


@app.command()
def bolide(
    video: Annotated[
        Path, typer.Argument(help="Video (mp4/avi/mkv/mov), folder of frames or FITS cube.")
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
    out: OutOpt = None,
) -> None:
    """Calibrated light curve of the bolide in a meteor-camera video."""

    # a run that fails before writing anything leaves no empty folder behind
    with (
        prepared_out_dir(out, video.stem) as out_dir,
        stage_bar() as progress,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always", NoDetectionsWarning)
        result = run_bolide(
            video, out_dir, calibration=calibration, site=site, time=time, fps=fps,
            pairs=pairs, method=method, progress=progress,
        )  # fmt: skip
    for w in caught:
        echo_err(f"skysift: warning: {w.message}")
    typer.echo(_bolide_summary(result))
    typer.echo(f"report: {result.files.get('report', out_dir)}")


@app.command()
def trails(
    images: Annotated[list[Path], typer.Argument(help="Single long exposures.")],
    out: OutOpt = None,
) -> None:
    """Meteor trails in single long exposures (one table per image)."""

    # a run that fails before writing anything leaves no empty folder behind
    with prepared_out_dir(out, "trails") as out_dir:
        for path in images:
            table, written = find_trails_in(path, out_dir)
            typer.echo(f"{path.name}: {len(table)} trail(s) -> {written}")
            for r in table:
                typer.echo(
                    f"  ({r['x1']:.0f}, {r['y1']:.0f}) -> ({r['x2']:.0f}, {r['y2']:.0f}), "
                    f"{r['length']:.0f} px, SNR {r['snr']:.1f}"
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
