"""The ``skysift`` Typer application, its shared options and helpers; commands register in the sibling modules."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from skysift import __version__
from skysift.errors import InputError

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


train_app = typer.Typer(
    help="Train a model and write its weights with a model card.", no_args_is_help=True
)
evaluate_app = typer.Typer(help="Evaluate a model on held-out data.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")


def echo_err(msg: str) -> None:
    typer.echo(msg, err=True)


class stage_bar:  # noqa: N801 - used as a context manager, like a function
    """A tqdm progress bar over the pipeline's stages."""

    def __enter__(self):  # noqa: ANN204

        # hidden with --quiet (the skysift logger set above INFO), and when not a terminal
        quiet = logging.getLogger("skysift").level > logging.INFO
        self.bar = tqdm(
            total=100, unit="%", leave=False, file=sys.stderr, disable=True if quiet else None
        )
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


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"skysift {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show debug messages.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Only warnings and errors: no progress bars."),
    ] = False,
) -> None:
    """skysift: stars, streaks, meteors and bolides in night-sky images and videos."""
    if verbose and quiet:
        msg = "--verbose and --quiet cannot be used together"
        raise InputError(msg)
    if verbose or quiet:
        # the level of the "skysift" logger; progress bars are hidden above INFO
        log = logging.getLogger("skysift")
        before = log.level
        log.setLevel(logging.DEBUG if verbose else logging.WARNING)
        ctx.call_on_close(lambda: log.setLevel(before))
