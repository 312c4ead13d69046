"""Commands of the deep-sky-object system: dso."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated

import typer

from skysift.cli.app import (
    OutOpt,
    SchedulerOpt,
    WorkersOpt,
    app,
    batch_command,
    evaluate_app,
    train_app,
)
from skysift.dso.evaluate import print_report, run_evaluation, write_evaluation
from skysift.dso.pipeline import run_dso
from skysift.dso.train import backgrounds_from_files, train_dso
from skysift.outputs import ensure_out_dir


@app.command()
def dso(
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Smart-telescope or DSLR image; several, folders or quoted globs run one "
            "task per image.",
            metavar="IMAGE",
        ),
    ],
    out: OutOpt = None,
    fov: Annotated[
        float | None, typer.Option("--fov", help="Horizontal field of view hint, degrees.")
    ] = None,
    ra: Annotated[float | None, typer.Option("--ra", help="Field centre hint: RA, deg.")] = None,
    dec: Annotated[float | None, typer.Option("--dec", help="Field centre hint: Dec, deg.")] = None,
    radius: Annotated[
        float, typer.Option("--radius", help="Search radius around --ra/--dec, deg.")
    ] = 5.0,
    pixel_aspect: Annotated[
        float | None,
        typer.Option("--pixel-aspect", help="Pixel aspect ratio of a resampled image (w/h)."),
    ] = None,
    detector: Annotated[
        bool,
        typer.Option(
            "--detector/--no-detector",
            help="Also run the learned detector (experimental: weak per-class F1, see "
            "docs/dso.md): detector_score, unidentified objects and saliency.png. Needs torch.",
        ),
    ] = False,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Plate-solve, name the catalogued objects in the field and say which are visible.

    Several images, a folder or a glob (or --workers/--scheduler): one task per
    image on the batch layer, one subfolder per input and the manifest run.ecsv
    in --out; a rerun skips the inputs already done. Exit code 5 when some
    inputs failed, 2 when all did.
    """
    if (ra is None) != (dec is None):
        msg = "--ra and --dec go together"
        raise typer.BadParameter(msg)
    out_dir = ensure_out_dir(out, "dso")
    image = images[0]
    single = len(images) == 1 and not image.is_dir() and not glob.has_magic(str(image))
    if not single or workers is not None or scheduler is not None:
        params = {
            "fov": fov, "ra": ra, "dec": dec, "radius": radius, "pixel_aspect": pixel_aspect,
            "detector": "dso_unet" if detector else None,
        }  # fmt: skip
        batch_command(
            images,
            out_dir,
            "dso",
            params,
            workers=workers,
            scheduler=scheduler,
        )
        return
    results = run_dso(
        [str(p) for p in images],
        out_dir,
        fov_deg=fov,
        ra_deg=ra,
        dec_deg=dec,
        radius_deg=radius,
        pixel_aspect=pixel_aspect,
        detector="dso_unet" if detector else None,
    )
    for r in results:
        objs = r.objects
        visible = [
            str(n) for n, v in zip(objs["label"], objs["verdict"], strict=True) if v == "visible"
        ]
        name = r.path.name if r.path is not None else "image"
        typer.echo(
            f"{name}: {len(objs)} catalogued objects in the field, "
            f"{len(visible)} visible ({', '.join(visible[:8]) or 'none'})"
        )
    typer.echo(f"outputs: {out_dir}")


@train_app.command("dso")
def train_dso_cmd(
    backgrounds: Annotated[
        list[Path],
        typer.Argument(
            help="Real star-field images whose cuts are the composites' backgrounds.",
            metavar="BACKGROUND",
        ),
    ],
    out: OutOpt = None,
    minutes: Annotated[float, typer.Option("--minutes", help="Wall-clock budget.")] = 11.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of weights and data.")] = 0,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 2e-3,
    init: Annotated[
        Path | None, typer.Option("--init", help="Start from these weights (.safetensors).")
    ] = None,
) -> None:
    """Train the learned DSO detector on composites (the shipped weights: 3 runs of 11 min)."""
    cuts = backgrounds_from_files([str(p) for p in backgrounds])  # bad input: no folder made
    out_dir = ensure_out_dir(out, "train-dso")
    train_dso(
        out_dir,
        backgrounds=cuts,
        minutes=minutes,
        seed=seed,
        lr=lr,
        init=init,
        sources=[p.name for p in backgrounds],
        log=typer.echo,
    )
    typer.echo(f"weights -> {out_dir}")


@evaluate_app.command("dso")
def evaluate_dso_cmd(
    backgrounds: Annotated[
        list[Path],
        typer.Argument(
            help="Held-out star-field images (not used in training).", metavar="BACKGROUND"
        ),
    ],
    out: OutOpt = None,
    n: Annotated[int, typer.Option("--n", help="Composites per background and kind.")] = 300,
    weights: Annotated[
        str | None, typer.Option("--weights", help="A .safetensors file (default: shipped).")
    ] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Detection threshold.")] = 0.5,
) -> None:
    """Per-class precision, recall and F1 on held-out composites: ours and astropy-made."""
    res = run_evaluation(
        [str(p) for p in backgrounds], n_images=n, weights=weights, threshold=threshold
    )
    out_dir = ensure_out_dir(out, "evaluate-dso")  # after the inputs were read
    print_report(res)
    write_evaluation(res, out_dir)
    typer.echo(f"outputs: {out_dir}")
