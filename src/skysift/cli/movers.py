"""Commands of the fast-mover system: movers, train/evaluate movers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
from skysift.movers.pipeline import run_movers
from skysift.outputs import ensure_out_dir, write_table

#: Files a folder or glob gives to a batch of sequences (FITS cubes, also compressed).
CUBE_FILES = tuple(f"{f}{c}" for f in FITS_SUFFIXES for c in ("", ".gz", ".bz2"))


@app.command()
def movers(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Frames (files or folders), in time order; with --workers/--scheduler, "
            "sequences stored as FITS cubes (files, folders, quoted globs), one task each.",
        ),
    ],
    out: OutOpt = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode", help="Observing mode: sidereal, target (tracking) or staring (intersection)."
        ),
    ] = "sidereal",
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="auto (the mixture of experts when torch is installed), moe, classical, "
            "or stack (shift-and-stack over a sequence).",
        ),
    ] = "auto",
    pixel_scale: Annotated[
        float | None, typer.Option("--pixel-scale", help="Arcseconds per pixel (rates in ″/h).")
    ] = None,
    psf_fwhm: Annotated[
        float | None, typer.Option("--psf-fwhm", help="PSF FWHM in pixels (default 2.5).")
    ] = None,
    rate_range: Annotated[
        tuple[float, float] | None,
        typer.Option("--rate-range", metavar="LO HI", help="Rates to search, pixels per frame."),
    ] = None,
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="Plate-solve frames that have no WCS.")
    ] = False,
    stn: Annotated[
        str, typer.Option("--stn", help="MPC observatory code for the ADES file.")
    ] = "500",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Find fast movers (asteroids, NEOs, debris): movers.ecsv, overlays and an ADES file.

    With --workers or --scheduler each sequence is one task on the batch
    layer: a FITS cube (T, H, W), or a folder of 2-D frames (a folder of
    cubes, or a quoted glob, gives its cubes):
    one subfolder per sequence and the manifest run.ecsv in --out; a rerun skips
    the sequences already done. Exit code 5 when some inputs failed, 2 when all did.
    """
    out_dir = ensure_out_dir(out, "movers")
    if workers is not None or scheduler is not None:
        params = {
            "mode": mode, "method": method, "pixel_scale": pixel_scale, "psf_fwhm": psf_fwhm,
            "rate_range": None if rate_range is None else list(rate_range),
            "calibrate": calibrate, "stn": stn,
        }  # fmt: skip
        batch_command(
            files,
            out_dir,
            "movers",
            params,
            workers=workers,
            scheduler=scheduler,
            suffixes=CUBE_FILES,
            keep_folders=frame_folder,  # a folder of 2-D frames is one input
        )
        return
    result = run_movers(
        [str(f) for f in files],
        out_dir,
        mode=mode,
        method=method,
        pixel_scale=pixel_scale,
        psf_fwhm=psf_fwhm,
        rate_range=rate_range,
        calibrate=calibrate,
        stn=stn,
    )
    used = result.config.get("method_used", method)
    typer.echo(
        f"{len(result.detections)} detections, {len(result.trajectories)} trajectories "
        f"({used}) -> {out_dir}"
    )


@train_app.command("movers")
def train_movers_cmd(
    out: OutOpt = None,
    minutes: Annotated[
        float, typer.Option("--minutes", help="Wall-clock budget, simulation included.")
    ] = 11.5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of weights and data.")] = 0,
) -> None:
    """Reproduce the shipped mixture of experts (about 12 minutes on 2 cores)."""
    # needs torch (the learn extra): imported on use
    from skysift.movers.train import TrainSettings, train_movers

    out_dir = ensure_out_dir(out, "train-movers")
    train_movers(out_dir, settings=TrainSettings(max_minutes=minutes, seed=seed), log=typer.echo)
    typer.echo(f"weights -> {out_dir}")


@evaluate_app.command("movers")
def evaluate_movers_cmd(
    out: OutOpt = None,
    weights: Annotated[
        str, typer.Option("--weights", help="Shipped name or a .safetensors file.")
    ] = "mover_moe",
    n_per_mode: Annotated[
        int, typer.Option("--n-per-mode", help="Held-out images per observing mode.")
    ] = 150,
    n_sky14: Annotated[
        int, typer.Option("--n-sky14", help="Held-out images at a 14 mag/arcsec² sky.")
    ] = 100,
    backgrounds: Annotated[
        list[Path] | None,
        typer.Option(
            "--backgrounds",
            help="Real star-field frames (held out of training) to composite held-out "
            "simulations on (the real_bg group); repeat the option for several.",
        ),
    ] = None,
    n_real_bg: Annotated[
        int, typer.Option("--n-real-bg", help="Held-out images on the real backgrounds.")
    ] = 100,
) -> None:
    """mAP@0.5, P and R per mode, sky, rate, length and SNR: the MoE, each expert, the baseline."""
    # needs torch (the learn extra): imported on use
    from skysift.movers.evaluate import evaluate_movers, evaluation_summary

    out_dir = ensure_out_dir(out, "evaluate-movers")
    table = evaluate_movers(
        weights,
        n_per_mode=n_per_mode,
        n_sky14=n_sky14,
        backgrounds=[str(p) for p in backgrounds] if backgrounds else None,
        n_real_bg=n_real_bg,
    )
    write_table(table, out_dir / "movers_evaluation.ecsv")
    summary = evaluation_summary(table)
    write_table(summary, out_dir / "movers_map50.ecsv")
    summary.pprint(max_lines=-1, max_width=-1)
    typer.echo(f"outputs: {out_dir} (precision and recall per detector: movers_evaluation.ecsv)")
