"""Commands of the calibrated core: stars, calibrate, simulate, serve."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated

import typer

from skysift.calibration.pipeline import calibrate as run
from skysift.calibration.pipeline import find_stars
from skysift.calibration.platepar import platepar_from_calibration, write_platepar
from skysift.calibration.report import write_calibration, write_stars
from skysift.cli.app import (
    OutOpt,
    SchedulerOpt,
    SiteOpt,
    TimeOpt,
    WorkersOpt,
    app,
    batch_command,
    echo_err,
    stage_bar,
)
from skysift.errors import InputError
from skysift.io import read_frame
from skysift.outputs import ensure_out_dir
from skysift.outputs.plots import plot_stars
from skysift.simulation.generate import load_config, write_samples


def _summary(result) -> str:  # noqa: ANN001
    lines = [
        f"model: {result.model_type}",
        f"stars detected: {len(result.stars)}",
        f"stars identified: {result.n_matched}",
        f"astrometric RMS: {result.astrometric_rms_px:.2f} px",
    ]
    zp = result.zero_point
    if zp is not None:
        lines.append(
            f"zero point ({result.photometric_band}): {zp.zero_point:.3f} ± {zp.zero_point_err:.3f} mag"
        )
        if "extinction" in zp.terms:
            lines.append(
                f"extinction: {zp.extinction_k:.3f} ± {zp.extinction_k_err:.3f} mag/airmass"
            )
        if "linearity" in zp.terms:
            lines.append(
                f"non-linearity: {zp.linearity:+.3f} mag/mag (gamma {1 / (1 + zp.linearity):.2f})"
            )
        lines.append(f"photometric RMS: {zp.rms_mag:.3f} mag ({zp.n_used} stars)")
    else:
        lines.append("zero point: not fitted (fewer than 5 usable stars)")
    return "\n".join(lines)


@app.command()
def stars(
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Image files (FITS, PNG, JPEG, TIFF), folders or quoted globs ('night/*.fits').",
            metavar="IMAGE",
        ),
    ],
    out: OutOpt = None,
    method: Annotated[
        str,
        typer.Option(
            help="Star finder: classical, matched (matched filter with local background and noise:"
            " complete under glows), unet (learned) or hybrid (U-Net + matched filter)."
        ),
    ] = "classical",
    threshold: Annotated[
        float, typer.Option(help="Detection threshold in background sigma.")
    ] = 3.0,
    mask: Annotated[
        bool,
        typer.Option(
            "--mask/--no-mask",
            help="Mask what is not sky (fisheye ring, obstructions, caption text).",
        ),
    ] = True,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write stars.png.")] = True,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Detect stars and write stars.ecsv (and stars.png).

    One image: the files go to --out. Several images, a folder or a glob (or
    --workers/--scheduler): one subfolder per input and the manifest run.ecsv
    in --out; a rerun skips the inputs already done. Exit code 5 when some
    inputs failed, 2 when all did.
    """

    image = images[0]
    single = len(images) == 1 and not image.is_dir() and not glob.has_magic(str(image))
    if not single or workers is not None or scheduler is not None:
        params = {"method": method, "threshold": threshold, "mask": mask, "plot": plot}
        batch_command(
            images, ensure_out_dir(out, "stars"), "stars", params,
            workers=workers, scheduler=scheduler,
        )  # fmt: skip
        return
    with stage_bar() as progress:  # stages only: a large DSLR frame takes minutes
        progress("read", 0.0)
        frame = read_frame(image)
        progress("find stars", 0.1)
        found, sky = find_stars(frame, method=method, threshold_sigma=threshold, use_mask=mask)
        out_dir = ensure_out_dir(out, frame.name)
        progress("write", 0.8)
        path = write_stars(found, out_dir)
        if plot:
            plot_stars(
                frame.data,
                found,
                out_dir / "stars.png",
                mask=None if sky is None else sky.mask,
                title=f"{frame.name}: {len(found)} stars",
            )
        progress("write", 1.0)
    typer.echo(f"{len(found)} stars -> {path}")


@app.command()
def calibrate(
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Image file (FITS, PNG, JPEG, TIFF); several, folders or quoted globs run "
            "one task per image.",
            metavar="IMAGE",
        ),
    ],
    site: SiteOpt = None,
    time: TimeOpt = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs", help="Manual identifications: CSV/ECSV with columns x, y, star (>= 4 rows)."
        ),
    ] = None,
    out: OutOpt = None,
    mode: Annotated[
        str, typer.Option(help="auto, allsky (fisheye model) or narrow (blind plate solve).")
    ] = "auto",
    fov: Annotated[
        float | None,
        typer.Option("--fov", help="Field of view hint for the plate solver, degrees."),
    ] = None,
    ra: Annotated[
        str | None,
        typer.Option(
            "--ra",
            help="Approximate RA of the field centre for the narrow solve: degrees or "
            "hh:mm:ss (also 5h35m17s).",
        ),
    ] = None,
    dec: Annotated[
        str | None,
        typer.Option("--dec", help="Approximate Dec of the field centre: degrees or +dd:mm:ss."),
    ] = None,
    radius: Annotated[
        float | None,
        typer.Option("--radius", help="Search radius around --ra/--dec, degrees (default 5)."),
    ] = None,
    exposure: Annotated[
        float | None,
        typer.Option("--exposure", help="Exposure time in seconds (overrides the file's)."),
    ] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write calibration.png.")] = True,
    platepar: Annotated[
        bool,
        typer.Option(
            "--platepar/--no-platepar",
            help="Also write the calibration as a GMN/RMS platepar (platepar_cmn2010.cal).",
        ),
    ] = False,
    station_code: Annotated[
        str, typer.Option("--station-code", help="Station code written into the platepar.")
    ] = "skysift",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Calibrate a frame: identify stars, fit the camera model and the zero point.

    Several images, a folder or a glob (or --workers/--scheduler): one task per
    image on the batch layer, one subfolder per input and the manifest run.ecsv
    in --out; a rerun skips the inputs already done. Exit code 5 when some
    inputs failed, 2 when all did.

    --time is the start of the exposure; with a known exposure time the sky is
    computed at mid-exposure.
    """

    image = images[0]
    single = len(images) == 1 and not image.is_dir() and not glob.has_magic(str(image))
    if not single or workers is not None or scheduler is not None:
        params = {
            "site": None if site is None else list(site), "time": time, "exposure": exposure,
            "pairs": None if pairs is None else str(pairs), "mode": mode, "fov": fov,
            "plot": plot, "ra_deg": ra, "dec_deg": dec, "radius_deg": radius,
        }  # fmt: skip
        batch_command(
            images,
            ensure_out_dir(out, "calibrate"),
            "calibrate",
            params,
            workers=workers,
            scheduler=scheduler,
        )
        return
    with stage_bar() as progress:
        progress("read", 0.0)
        frame = read_frame(image, site=site, time=time, exposure=exposure)
        result = run(
            frame, pairs=pairs, mode=mode, fov_deg=fov, ra_deg=ra, dec_deg=dec,
            radius_deg=radius, progress=progress,
        )  # fmt: skip
        out_dir = ensure_out_dir(out, frame.name)
        progress("write", 1.0)
        write_calibration(result, out_dir, plot=plot)
    typer.echo(_summary(result))
    if platepar:
        try:
            fit = platepar_from_calibration(result, station_code=station_code)
        except InputError as err:  # e.g. a mirrored image, which a platepar cannot hold
            echo_err(f"skysift: warning: no platepar written: {err}")
        else:
            path = write_platepar(fit.platepar, out_dir / "platepar_cmn2010.cal")
            typer.echo(
                f"platepar -> {path} (fit to the camera model: RMS {fit.rms_px:.2f} px, "
                f"max {fit.max_px:.2f} px)"
            )
    typer.echo(f"outputs: {out_dir}")


@app.command()
def simulate(
    kind: Annotated[
        str, typer.Argument(help="What to simulate: stars, streaks, moving, bolide or stamps.")
    ],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 8,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed gives the same files.")
    ] = 0,
    out: OutOpt = None,
    background: Annotated[
        list[Path] | None,
        typer.Option(
            "--background",
            help="Real background frame (repeatable): stars, streaks and bolide are injected on it.",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="JSON file of generator parameters.")
    ] = None,
) -> None:
    """Write simulated samples with exact truth: FITS (+ mask), ECSV truth, PNG previews (MP4 for bolide clips)."""

    params = load_config(config)
    out_dir = ensure_out_dir(out, f"simulate-{kind}")
    manifest = write_samples(kind, n, out_dir, seed=seed, backgrounds=background, **params)
    typer.echo(f"{len(manifest)} {kind} samples -> {out_dir}")


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; the default serves this computer only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder of uploads and jobs (default $SKYSIFT_WEB_DATA or ~/.local/share/skysift/web).",
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest accepted upload, in megabytes.")
    ] = 500.0,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Another Host name the server answers to (repeatable; '*' accepts any).",
        ),
    ] = None,
) -> None:
    """Run the local web app (needs the web extra): start jobs, follow them, see the results."""
    # the web extra (fastapi): imported on use
    from skysift.web.app import serve as run

    run(
        host,
        port,
        data_dir,
        max_upload_mb=max_upload_mb,
        allowed_hosts=tuple(allow_host or ()),
        echo=typer.echo,
    )
