"""Commands of the deep-sky-object system: dso."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated

import typer

from skysift.cli.app import OutOpt, SchedulerOpt, WorkersOpt, app, batch_command
from skysift.dso.pipeline import run_dso
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
