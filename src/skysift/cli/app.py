"""The ``skysift`` Typer application, its shared options and helpers; commands register in the sibling modules."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from skysift import __version__
from skysift.batch import BatchSummary, run_batch
from skysift.cli.config import (
    Settings,
    apply_utc_offset,
    build_default_map,
    config_app,
    find_config,
    load_config,
    resolve_settings,
)
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


def _station_time(ctx: typer.Context, value: str | None) -> str | None:
    """--time: a time without an offset is in the station's ``utc_offset`` (UTC without one)."""
    settings = ctx.find_root().meta.get("skysift.settings") or Settings()
    return apply_utc_offset(value, settings.values.get("utc_offset"))


TimeOpt = Annotated[
    str | None,
    typer.Option(
        "--time",
        metavar="ISO8601",
        callback=_station_time,
        help="Observation time, UTC unless the string has an offset "
        "(or the station's utc_offset from the configuration file).",
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
app.add_typer(config_app, name="config")


def echo_err(msg: str) -> None:
    typer.echo(msg, err=True)


WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Local Dask worker processes (default: the machine's cores; 0: no Dask).",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="Address of a running Dask scheduler (tcp://HOST:8786)."),
]


def batch_command(
    inputs: list[Path],
    out_dir: Path,
    task: str,
    params: dict,
    *,
    workers: int | None,
    scheduler: str | None,
    **kwargs: object,
) -> None:
    """A command's many-input path: ``run_batch`` then :func:`finish_batch` (exits 5/2 on failures)."""
    finish_batch(
        run_batch(
            inputs,
            out_dir,
            task,
            params,
            workers=workers,
            scheduler=scheduler,
            echo=typer.echo,
            **kwargs,
        )  # fmt: skip
    )


def finish_batch(summary: BatchSummary) -> None:
    """Print a batch run's failures (stderr) and summary line; exit 5 if some failed, 2 if all."""
    for line in summary.failure_lines():
        echo_err(line)
    typer.echo(summary.format())
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


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
    station: Annotated[
        str | None,
        typer.Option(
            "--station",
            metavar="NAME",
            help="Named station of the configuration file: its site, fps, ... become the "
            "defaults of the options of the same name.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="PATH",
            help="Configuration file (default: $SKYSIFT_CONFIG, ./skysift.toml, then "
            "~/.config/skysift/config.toml).",
        ),
    ] = None,
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
    _apply_config(ctx, station, config)


def _apply_config(ctx: typer.Context, station: str | None, config: Path | None) -> None:
    """Load the configuration file and make the station's settings the subcommands' defaults.

    Through click's ``default_map``, so an option typed on the command line wins.
    """
    if ctx.resilient_parsing:
        return
    path = find_config(config)
    loaded = load_config(path) if path is not None else None
    settings = resolve_settings(loaded, station)
    ctx.meta["skysift.config"] = loaded
    ctx.meta["skysift.settings"] = settings
    if not settings.values:
        if path is not None:
            logging.getLogger("skysift.cli").debug("configuration: %s (no settings used)", path)
        return
    defaults = build_default_map(ctx.command, settings)
    ctx.default_map = _merge(defaults, ctx.default_map or {})
    logging.getLogger("skysift.cli").debug(
        "configuration: %s, station: %s (%s)",
        path,
        settings.station or "none",
        ", ".join(f"{k}={v}" for k, v in settings.values.items()),
    )


def _merge(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s values on top, recursively (an explicit default_map wins)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
