"""Commands of the streak system: streaks, train/evaluate streaks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skysift.cli.app import (
    OutOpt,
    app,
    echo_err,
    evaluate_app,
    train_app,
)
from skysift.errors import InputError
from skysift.outputs import ensure_out_dir
from skysift.streaks.evaluation import evaluate_streaks, format_table1, write_evaluation
from skysift.streaks.pipeline import run_streaks


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
) -> None:
    """Find satellite and debris streaks: STEM.streaks.ecsv, STEM.prob.fits, STEM.mask.png and summary.ecsv."""

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
    failed = [(f, e) for f, e in zip(summary["file"], summary["error"], strict=True) if str(e)]
    for f, e in failed:
        echo_err(f"skysift: failed: {f}: {e}")
    typer.echo(
        f"{len(summary)} images, {n_found} streaks, {len(failed)} failed -> {out_dir}"
        if failed
        else f"{len(summary)} images, {n_found} streaks -> {out_dir}"
    )
    if failed:
        # 2 when every input was bad (as for one bad input), 5 when only some were
        raise typer.Exit(2 if len(failed) == len(summary) else 5)


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
