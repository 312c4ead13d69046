"""The ``skysift`` command line: a thin shell over the library.

Every :class:`skysift.errors.SkysiftError` becomes a one-line message on
stderr (``skysift: error: ...``) and a non-zero exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from skysift.errors import SkysiftError

app = typer.Typer(
    name="skysift",
    help="Find, measure and explain what moves and shines in night-sky images and videos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SiteOpt = Annotated[
    tuple[float, float, float] | None,
    typer.Option(
        "--site",
        metavar="LAT LON HEIGHT_M",
        help="Observing site: latitude and longitude in degrees (east positive), height in metres.",
    ),
]
TimeOpt = Annotated[
    str | None,
    typer.Option(
        "--time", metavar="ISO8601", help="Observation time, UTC unless the string has an offset."
    ),
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Output folder (default ./skysift-out/<stem>/).")
]


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


def _version_callback(value: bool) -> None:
    if value:
        from skysift import __version__

        typer.echo(f"skysift {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """skysift: stars, streaks, meteors and bolides in night-sky images and videos."""


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
    image: Annotated[Path, typer.Argument(help="Image file (FITS, PNG, JPEG, TIFF).")],
    out: OutOpt = None,
    method: Annotated[
        str,
        typer.Option(
            help="Star finder: classical, unet (learned) or hybrid (U-Net + matched filter)."
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
) -> None:
    """Detect stars and write stars.ecsv (and stars.png)."""
    from skysift.io import read_frame
    from skysift.outputs import ensure_out_dir
    from skysift.outputs.calibration import write_stars
    from skysift.outputs.plots import plot_stars
    from skysift.pipeline.calibrate import find_stars

    frame = read_frame(image)
    found, sky = find_stars(frame, method=method, threshold=threshold, use_mask=mask)
    out_dir = ensure_out_dir(out, frame.name)
    path = write_stars(found, out_dir)
    if plot:
        plot_stars(
            frame.data,
            found,
            out_dir / "stars.png",
            mask=None if sky is None else sky.mask,
            title=f"{frame.name}: {len(found)} stars",
        )
    typer.echo(f"{len(found)} stars -> {path}")


@app.command()
def calibrate(
    image: Annotated[Path, typer.Argument(help="Image file (FITS, PNG, JPEG, TIFF).")],
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
    exposure: Annotated[
        float | None,
        typer.Option("--exposure", help="Exposure time in seconds (overrides the file's)."),
    ] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write calibration.png.")] = True,
) -> None:
    """Calibrate a frame: identify stars, fit the camera model and the zero point.

    --time is the start of the exposure; with a known exposure time the sky is
    computed at mid-exposure.
    """
    from skysift.io import read_frame
    from skysift.outputs import ensure_out_dir
    from skysift.outputs.calibration import write_calibration
    from skysift.pipeline.calibrate import calibrate as run

    frame = read_frame(image, site=site, time=time, exposure=exposure)
    result = run(frame, pairs=pairs, mode=mode, fov_deg=fov)
    out_dir = ensure_out_dir(out, frame.name)
    write_calibration(result, out_dir, plot=plot)
    typer.echo(_summary(result))
    typer.echo(f"outputs: {out_dir}")


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
    import warnings

    from skysift.errors import NoDetectionsWarning
    from skysift.outputs import ensure_out_dir
    from skysift.pipeline.bolide import run_bolide

    out_dir = ensure_out_dir(out, video.stem)
    with _stage_bar() as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoDetectionsWarning)
        result = run_bolide(
            video, out_dir, calibration=calibration, site=site, time=time, fps=fps,
            pairs=pairs, method=method, progress=progress,
        )  # fmt: skip
    for w in caught:
        _echo(f"skysift: warning: {w.message}")
    typer.echo(_bolide_summary(result))
    typer.echo(f"report: {result.files.get('report', out_dir)}")


def _bolide_summary(result) -> str:  # noqa: ANN001
    lc = result.lightcurve
    if not result.found:
        return "no bolide found"
    import numpy as np

    from skysift.outputs.bolide import peak_text

    return (
        f"bolide tracked in {len(lc)} frames ({int(np.sum(lc['saturated']))} saturated), "
        f"{peak_text(lc)}; segmenter {result.method}"
    )


class _stage_bar:  # noqa: N801 - used as a context manager, like a function
    """A tqdm progress bar over the pipeline's stages."""

    def __enter__(self):  # noqa: ANN204
        from tqdm import tqdm

        self.bar = tqdm(total=100, unit="%", leave=False, file=sys.stderr, disable=None)
        self.stage = ""
        return self

    def __call__(self, stage: str, fraction: float) -> None:
        if stage != self.stage:
            self.stage = stage
            self.bar.set_description(stage)
        n = round(100 * fraction)
        if n != self.bar.n:
            self.bar.n = n
            self.bar.refresh()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.bar.close()


@app.command()
def trails(
    images: Annotated[list[Path], typer.Argument(help="Single long exposures.")],
    out: OutOpt = None,
) -> None:
    """Meteor trails in single long exposures (one table per image)."""
    from skysift.outputs import ensure_out_dir
    from skysift.pipeline.trails import find_trails_in

    out_dir = ensure_out_dir(out, "trails")
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
    from skysift.pipeline.demo import run_demo

    out_dir = out if out is not None else Path.cwd() / "skysift-demo"
    with _stage_bar() as progress:
        summary = run_demo(out_dir, progress=progress, echo=typer.echo)
    typer.echo(f"report: {summary['report']}")


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
    from skysift.outputs import ensure_out_dir
    from skysift.simulation.generate import load_config, write_samples

    params = load_config(config)
    out_dir = ensure_out_dir(out, f"simulate-{kind}")
    manifest = write_samples(kind, n, out_dir, seed=seed, backgrounds=background, **params)
    typer.echo(f"{len(manifest)} {kind} samples -> {out_dir}")


@app.command()
def streaks(
    inputs: Annotated[list[Path], typer.Argument(help="Images or folders of images.")],
    out: OutOpt = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Score threshold of streak pixels (0-1).")
    ] = 0.5,
    method: Annotated[
        str,
        typer.Option(
            help="Streak finder: learned (classifier + U-Net segmenter), classical "
            "(segmentation + elongation cut) or hough (probabilistic Hough lines)."
        ),
    ] = "learned",
    segment_all: Annotated[
        bool,
        typer.Option(
            "--all", help="learned: segment every image, not only those the classifier flags."
        ),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Skip images already done.")
    ] = True,
) -> None:
    """Find satellite and debris streaks: STEM.streaks.ecsv, STEM.prob.fits, STEM.mask.png and summary.ecsv."""
    from skysift.outputs import ensure_out_dir
    from skysift.pipeline.streaks import run_streaks

    out_dir = ensure_out_dir(out, "streaks")
    summary = run_streaks(
        [str(p) for p in inputs],
        out_dir,
        method=method,
        threshold=threshold,
        segment_all=segment_all,
        resume=resume,
    )
    n_found = int(sum(max(int(n), 0) for n in summary["n_streaks"]))
    typer.echo(f"{len(summary)} images, {n_found} streaks -> {out_dir}")


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
) -> None:
    """Run the local web app (needs the web extra): start jobs, follow them, see the results."""
    from skysift.web.app import serve as run

    run(host, port, data_dir, max_upload_mb=max_upload_mb, echo=typer.echo)


train_app = typer.Typer(
    help="Train a model and write its weights with a model card.", no_args_is_help=True
)
evaluate_app = typer.Typer(help="Evaluate a model on held-out data.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")


@train_app.command("stars")
def train_stars_cmd(
    out: OutOpt = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="JSON recipe overriding the shipped one.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of weights, data stream and evaluation.")
    ] = 0,
) -> None:
    """Reproduce the shipped star-detector weights (about 11 minutes on 2 cores)."""
    from skysift.outputs import ensure_out_dir
    from skysift.simulation.generate import load_config
    from skysift.training.stars import train_stars

    out_dir = ensure_out_dir(out, "train-stars")
    _, card = train_stars(load_config(config) or None, out=out_dir, seed=seed)
    metrics = card.get("metrics", {}).get("held_out_composites", {})
    for name, m in metrics.items():
        if isinstance(m, dict):
            typer.echo(f"{name}: precision {m['precision']:.3f}, recall {m['recall']:.3f}")
    typer.echo(f"weights -> {out_dir}")


@train_app.command("stars-rerank")
def train_stars_rerank_cmd(
    out: OutOpt = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="JSON recipe overriding the shipped one.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the scorer's weights.")] = 0,
) -> None:
    """Reproduce the hybrid star finder's candidate scorer (about 5 minutes on 2 cores)."""
    from skysift.outputs import ensure_out_dir
    from skysift.simulation.generate import load_config
    from skysift.training.stars_rerank import train_star_reranker

    out_dir = ensure_out_dir(out, "train-stars-rerank")
    _, card = train_star_reranker(load_config(config) or None, out=out_dir, seed=seed)
    for name, m in card.get("metrics", {}).get("held_out_composites", {}).items():
        typer.echo(f"{name}: precision {m['precision']:.3f}, recall {m['recall']:.3f}")
    typer.echo(f"weights -> {out_dir}")


@evaluate_app.command("stars")
def evaluate_stars_cmd(
    weights: Annotated[
        str, typer.Option("--weights", help="Registered weights name or a .safetensors file.")
    ] = "stars_unet",
    rerank_weights: Annotated[
        str,
        typer.Option(
            "--rerank-weights", help="Scorer of the hybrid finder ('none' to leave it out)."
        ),
    ] = "stars_rerank",
    n_frames: Annotated[int, typer.Option("--n-frames", help="Held-out composite frames.")] = 9,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the evaluation frames.")] = 1000,
    out: OutOpt = None,
) -> None:
    """Learned, hybrid and classical star detection on held-out composite frames."""
    from skysift.outputs import ensure_out_dir, write_table
    from skysift.training.stars import evaluate_stars

    hybrid = None if rerank_weights.lower() == "none" else rerank_weights
    table = evaluate_stars(weights, seed=seed, n_frames=n_frames, hybrid=hybrid, progress=True)
    out_dir = ensure_out_dir(out, "evaluate-stars")
    write_table(table, out_dir / "star_detector_metrics.ecsv")
    for row in table:
        typer.echo(
            f"{row['detector']:<10} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
            f"F1 {row['f1']:.3f}  centroid RMS {row['centroid_rms']:.2f} px"
        )
    typer.echo(f"outputs: {out_dir}")


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
    from skysift.outputs import ensure_out_dir
    from skysift.simulation.generate import load_config
    from skysift.training.bolide import train_bolide

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
    from skysift.outputs import ensure_out_dir, write_table
    from skysift.training.bolide import evaluate_bolide

    table = evaluate_bolide(weights, seed=seed, n_clips=n_clips, threshold=threshold)
    out_dir = ensure_out_dir(out, "evaluate-bolide")
    write_table(table, out_dir / "bolide_segmenter_metrics.ecsv")
    for row in table:
        typer.echo(
            f"{row['method']:<10} {row['bin_kind']:<7} {row['bin']:<12} precision "
            f"{row['precision']:.3f}  recall {row['recall']:.3f}  frames {row['n_frames']}"
        )
    typer.echo(f"outputs: {out_dir}")


@train_app.command("streaks")
def train_streaks_cmd(
    out: OutOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of weights and data stream.")] = 0,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate/--no-evaluate", help="Measure the held-out metrics for the cards."
        ),
    ] = True,
) -> None:
    """Reproduce the shipped streak classifier and segmenter weights (55 + 25 min on 2 shared cores)."""
    from skysift.outputs import ensure_out_dir
    from skysift.training.streaks import train_streaks

    out_dir = ensure_out_dir(out, "train-streaks")
    train_streaks(out_dir, seed=seed, evaluate=evaluate)
    typer.echo(f"weights -> {out_dir}")


@evaluate_app.command("streaks")
def evaluate_streaks_cmd(
    classifier: Annotated[
        str, typer.Option("--classifier", help="Registered weights name or a .safetensors file.")
    ] = "streak_classifier",
    segmenter: Annotated[
        str, typer.Option("--segmenter", help="Registered weights name or a .safetensors file.")
    ] = "streak_segmenter",
    n_frames: Annotated[
        int, typer.Option("--n-frames", help="Held-out 512x512 segmentation frames.")
    ] = 48,
    n_cutouts: Annotated[
        int, typer.Option("--n-cutouts", help="Held-out 128x128 classifier cutouts.")
    ] = 2000,
    steps: Annotated[
        str,
        typer.Option("--steps", help="Comma-separated window steps to compare (0 = whole image)."),
    ] = "",
    hough: Annotated[bool, typer.Option("--hough", help="Add the Hough baseline.")] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out sets.")] = 1000,
    out: OutOpt = None,
) -> None:
    """Table 1 of the satellite paper: learned vs baselines on held-out composites, ROC/PR plots."""
    from skysift.evaluation.streaks import evaluate_streaks, format_table1, write_evaluation
    from skysift.outputs import ensure_out_dir

    try:
        step_list = tuple(int(s) for s in steps.split(",") if s.strip())
    except ValueError:
        from skysift.errors import InputError

        msg = f"--steps must be comma-separated integers, got {steps!r}"
        raise InputError(msg) from None
    report = evaluate_streaks(
        classifier=classifier,
        segmenter=segmenter,
        n_frames=n_frames,
        n_cutouts=n_cutouts,
        steps=step_list,
        hough=hough,
        seed=seed,
        progress=True,
    )
    out_dir = ensure_out_dir(out, "evaluate-streaks")
    write_evaluation(report, out_dir)
    typer.echo(format_table1(report.table1))
    if report.classifier is not None:
        for row in report.classifier:
            typer.echo(
                f"classifier {row['subset']:<22} n={row['n_pos']:<5} AUC {row['auc']:.4f}  "
                f"TPR at 1% FPR {row['tpr_at_1pct_fpr']:.3f}"
            )
    if report.steps is not None:
        for row in report.steps:
            typer.echo(
                f"step {row['step']:>4}: {row['n_windows']:>4} windows, "
                f"{row['seconds_1032x768']:.2f} s per 1032x768 frame, "
                f"TPR@1e-5 {row['tpr_at_fpr']:.3f}, P@90%R {row['precision_at_recall']:.3f}"
            )
    typer.echo(f"outputs: {out_dir}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skysift`` console script; returns the exit code."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("skysift: %(message)s"))
    log = logging.getLogger("skysift")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        app(args=argv, standalone_mode=False)
    except SkysiftError as err:
        _echo(f"skysift: error: {err}")
        return err.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _echo("skysift: interrupted")
        return 130
    except typer.TyperException as err:  # usage errors (bad option, missing argument)
        show = getattr(err, "show", None)
        if show is not None:
            show()
        else:
            _echo(f"skysift: error: {err}")
        return int(getattr(err, "exit_code", 2))
    finally:
        log.removeHandler(handler)
    return 0


def _console() -> None:
    sys.exit(main())
