"""Commands of the stamp system: stamps, train/evaluate stamps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from skysift.batch.runner import frame_folder
from skysift.cli.app import (
    OutOpt,
    SchedulerOpt,
    WorkersOpt,
    app,
    batch_command,
    evaluate_app,
    train_app,
)
from skysift.io.readers import FITS_SUFFIXES
from skysift.outputs import ensure_out_dir, write_table

#: Files a folder or glob gives to a batch of stamp cubes (FITS, also compressed).
CUBE_FILES = tuple(f"{f}{c}" for f in FITS_SUFFIXES for c in ("", ".gz", ".bz2"))


@app.command()
def stamps(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="A FITS cube or folder of stamps, or N registered dither frames; with "
            "--workers/--scheduler, FITS cubes (files, folders, quoted globs), one task each.",
        ),
    ],
    out: OutOpt = None,
    dithers: Annotated[
        int | None,
        typer.Option(
            "--dithers",
            help="The inputs are this many registered dither frames: detect, cut and classify.",
        ),
    ] = None,
    interval: Annotated[
        float,
        typer.Option("--interval", help="Start-to-start time between dithers, in exposures."),
    ] = 1.2,
    pixel_scale: Annotated[
        float, typer.Option("--pixel-scale", help="Arcseconds per pixel (for SSO rates).")
    ] = 0.1,
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Classifier weights (.safetensors).")
    ] = None,
    nan: Annotated[
        str, typer.Option("--nan", help="NaN pixels: raise (default) or fill with the median.")
    ] = "raise",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Classify stamps as SSO, star, galaxy or cosmic ray: stamps.ecsv and contact sheets.

    With --workers or --scheduler each cube of stamps (or, with --dithers, of
    dither frames), or folder of 2-D stamps, is one task on the batch layer (a
    folder of cubes, or a quoted glob, gives its cubes): one subfolder per cube and the
    manifest run.ecsv in --out; a rerun skips the cubes already done. Exit code
    5 when some inputs failed, 2 when all did.
    """
    out_dir = ensure_out_dir(out, "stamps")
    if workers is not None or scheduler is not None:
        params = {
            "dithers": dithers, "interval": interval, "pixel_scale": pixel_scale,
            "weights": None if weights is None else str(weights), "nan": nan,
        }  # fmt: skip
        batch_command(
            inputs,
            out_dir,
            "stamps",
            params,
            workers=workers,
            scheduler=scheduler,
            suffixes=CUBE_FILES,
            keep_folders=frame_folder,  # a folder of 2-D frames is one input
        )
        return
    # the classifier needs torch (the learn extra): imported on use
    from skysift.stamps.pipeline import run_stamps

    table = run_stamps(
        [str(p) for p in inputs],
        out_dir,
        n_dithers=dithers,
        weights=weights,
        dither_interval=interval,
        pixel_scale=pixel_scale,
        nan=nan,
    )
    names, counts = np.unique(np.asarray(table["class"], str), return_counts=True)
    found = ", ".join(f"{n} {c}" for c, n in zip(names, counts, strict=True))
    typer.echo(f"{len(table)} stamps ({found or 'none'}) -> {out_dir}")


@train_app.command("stamps")
def train_stamps_cmd(
    out: OutOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of weights and data.")] = 0,
) -> None:
    """Reproduce the shipped stamp classifier (about 10 minutes on one core)."""
    # needs torch (the learn extra): imported on use
    from skysift.stamps.train import train_stamps

    out_dir = ensure_out_dir(out, "train-stamps")
    path = train_stamps(out_dir, seed=seed, log=typer.echo)
    typer.echo(f"weights -> {path}")


@evaluate_app.command("stamps")
def evaluate_stamps_cmd(
    out: OutOpt = None,
    n_per_class: Annotated[
        int, typer.Option("--n-per-class", help="Held-out stamps per class.")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out set.")] = 12345,
    dithers: Annotated[int, typer.Option("--dithers", help="Dithers per stamp (1-4).")] = 3,
) -> None:
    """Accuracy, confusion, ROC, completeness and purity of the classifier and the baseline."""
    # needs torch (the learn extra): imported on use
    from skysift.stamps.evaluate import evaluate_stamps, summary_table
    from skysift.stamps.plots import save_evaluation_figure  # (the same: torch)

    out_dir = ensure_out_dir(out, "evaluate-stamps")
    result = evaluate_stamps(n_per_class=n_per_class, seed=seed, n_dithers=dithers)
    table = summary_table(result)
    write_table(table, out_dir / "stamps_evaluation.ecsv")
    save_evaluation_figure(result, out_dir / "stamps_evaluation.png")
    table.pprint(max_width=-1, max_lines=-1)
    typer.echo(f"outputs: {out_dir}")
