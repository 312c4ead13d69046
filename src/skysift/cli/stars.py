"""Commands of the star finders: train stars, train stars-rerank, evaluate stars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skysift.cli.app import (
    OutOpt,
    evaluate_app,
    train_app,
)
from skysift.outputs import ensure_out_dir, write_table
from skysift.simulation.generate import load_config
from skysift.stars.training_rerank import train_star_reranker


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
    # needs torch (the learn extra): imported on use
    from skysift.stars.training import train_stars

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
    # needs torch (the learn extra): imported on use
    from skysift.stars.evaluation import evaluate_stars

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
