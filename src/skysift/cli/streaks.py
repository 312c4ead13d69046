"""Commands of the streak system: streaks, train/evaluate streaks."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated

import typer

from skysift.batch import run_batch
from skysift.batch.gather import link_streak_tracks, streaks_summary
from skysift.cli.app import (
    OutOpt,
    SchedulerOpt,
    WorkersOpt,
    app,
    echo_err,
    evaluate_app,
    train_app,
)
from skysift.errors import InputError
from skysift.outputs import ensure_out_dir
from skysift.streaks.evaluation import evaluate_streaks, format_table1, write_evaluation
from skysift.streaks.pipeline import make_streak_finder, run_streaks


@app.command()
def streaks(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Images, folders of images or quoted globs ('pass/*.fits')."),
    ],
    out: OutOpt = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Score threshold of streak pixels (0-1).")
    ] = 0.5,
    method: Annotated[
        str,
        typer.Option(
            help="Streak finder: learned (classifier + U-Net segmenter), classical "
            "(segmentation + elongation cut), hough (probabilistic Hough lines) or radon "
            "(matched-filter Radon line detector, Nir et al. 2018)."
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
    link: Annotated[
        bool,
        typer.Option(
            "--link/--no-link",
            help="Several images: link their streaks (inputs in order = a sequence) into "
            "tracks.ecsv.",
        ),
    ] = False,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Find satellite and debris streaks: STEM.streaks.ecsv, STEM.prob.fits, STEM.mask.png and summary.ecsv.

    One image: the files go to --out. Several images, a folder or a glob (or
    --workers/--scheduler): one task per image on the batch layer, one
    subfolder per input, summary.ecsv and the manifest run.ecsv in --out (with
    --link, tracks.ecsv); a rerun skips the images already done. Exit code 5
    when some inputs failed, 2 when all did.
    """

    first = inputs[0]
    single = len(inputs) == 1 and not first.is_dir() and not glob.has_magic(str(first))
    out_dir = ensure_out_dir(out, "streaks")
    if single and workers is None and scheduler is None:
        summary = run_streaks(
            [str(p) for p in inputs],
            out_dir,
            method=method,
            threshold=threshold,
            segment_all=segment_all,
            resume=resume,
        )
        failed = [(f, e) for f, e in zip(summary["file"], summary["error"], strict=True) if str(e)]
        for f, e in failed:
            echo_err(f"skysift: failed: {f}: {e}")
        code = (2 if len(failed) == len(summary) else 5) if failed else 0
    else:
        make_streak_finder(method)  # an unknown method or no torch: one error before any task
        params = {"method": method, "threshold": threshold, "segment_all": segment_all}
        run = run_batch(
            inputs, out_dir, "streaks", params, workers=workers, scheduler=scheduler,
            resume=resume, echo=typer.echo,
        )  # fmt: skip
        for line in run.failure_lines():
            echo_err(line)
        summary = streaks_summary(run, out_dir)
        failed = [e for e in summary["error"] if str(e)]
        if link:
            tracks = link_streak_tracks(run, out_dir)
            n_tracks = len(set(tracks["track_id"])) if len(tracks) else 0
            typer.echo(f"{n_tracks} tracks -> {out_dir / 'tracks.ecsv'}")
        typer.echo(run.format())
        code = run.exit_code
    n_found = int(sum(max(int(n), 0) for n in summary["n_streaks"]))
    typer.echo(
        f"{len(summary)} images, {n_found} streaks, {len(failed)} failed -> {out_dir}"
        if failed
        else f"{len(summary)} images, {n_found} streaks -> {out_dir}"
    )
    if code:
        # 2 when every input was bad (as for one bad input), 5 when only some were
        raise typer.Exit(code)


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
    # needs torch (the learn extra): imported on use
    from skysift.streaks.training import train_streaks

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

    try:
        step_list = tuple(int(s) for s in steps.split(",") if s.strip())
    except ValueError:
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
