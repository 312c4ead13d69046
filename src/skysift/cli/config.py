"""The site/camera configuration file: named stations whose settings become option defaults.

A TOML file, found (first match wins) at

1. the root option ``--config PATH``;
2. the environment variable ``SKYSIFT_CONFIG``;
3. ``skysift.toml`` in the working folder;
4. ``$XDG_CONFIG_HOME/skysift/config.toml`` (``~/.config/skysift/config.toml``).

Layout::

    [defaults]
    station = "chaligny"          # optional default station

    [defaults.stars]              # optional defaults for every station, here of one command
    threshold = 4.0

    [stations.chaligny]
    site = [48.62, 6.08, 250]     # latitude, longitude (east positive) in degrees, height in m
    fps = 25                      # any option of the same name, e.g. --fps
    utc_offset = "+01:00"         # local clock: applied to a --time written without an offset

    [stations.chaligny.streaks]   # options of one command only (its --threshold is 0-1)
    threshold = 0.6

A station's keys are the options of the commands (``pixel_scale`` or
``pixel-scale`` for ``--pixel-scale``); each becomes the default of that option
in every command that has it (a ``[... .COMMAND]`` table: in that command
only, overriding), so an option typed on the command line always wins. Errors
name the file and the key and exit with code 2.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from skysift.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

__all__ = [
    "CONFIG_ENV",
    "LOCAL_NAME",
    "Config",
    "Settings",
    "apply_utc_offset",
    "build_default_map",
    "config_app",
    "config_candidates",
    "find_config",
    "load_config",
    "resolve_settings",
]

CONFIG_ENV = "SKYSIFT_CONFIG"
LOCAL_NAME = "skysift.toml"
# keys read here and not passed to an option
SPECIAL_KEYS = ("utc_offset",)
# options that describe one observation or one run, never a station
NOT_STATION_KEYS = ("time", "station", "config", "version", "verbose", "quiet", "help")
_OFFSET_RE = re.compile(r"^(?P<sign>[+-])(?P<h>\d{2}):?(?P<m>\d{2})?$")
# a time of day followed by a zone: 'T00:52:21Z', ' 00:52+01:00', '00:52:21.5 UTC'
_HAS_ZONE_RE = re.compile(
    r"\d:\d{2}(?::\d{1,2}(?:\.\d*)?)?\s*(?:Z|UTC|UT|[+-]\d{2}(?::?\d{2})?)\s*$", re.IGNORECASE
)
_HAS_CLOCK_RE = re.compile(r"\d:\d{2}(?::\d{1,2}(?:\.\d*)?)?\s*$")


@dataclass(frozen=True)
class Config:
    """A parsed, validated configuration file.

    Attributes
    ----------
    path : Path
        The file.
    stations : dict of str to dict
        Station name -> its settings (option name with underscores -> value).
    defaults : dict
        Settings for every station (``[defaults]`` less ``station``).
    default_station : str or None
        The station used without ``--station``.
    """

    path: Path
    stations: dict[str, dict[str, Any]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    default_station: str | None = None


@dataclass(frozen=True)
class Settings:
    """The settings in force for one run: ``[defaults]`` overlaid with the station's.

    Attributes
    ----------
    path : Path or None
        The configuration file (``None`` when there is none).
    station : str or None
        The station used.
    values : dict
        Option name (underscores) -> value, ``utc_offset`` included.
    """

    path: Path | None = None
    station: str | None = None
    values: dict[str, Any] = field(default_factory=dict)


def config_candidates(cwd: Path | None = None) -> list[Path]:
    """The places searched for a configuration file, in order (without ``--config``).

    Parameters
    ----------
    cwd : Path, optional
        The working folder (default: the current one).

    Returns
    -------
    list of Path
        ``$SKYSIFT_CONFIG`` when set, ``./skysift.toml`` and the user's
        ``$XDG_CONFIG_HOME/skysift/config.toml`` (``~/.config`` when unset).
    """
    out = []
    env = os.environ.get(CONFIG_ENV)
    if env:
        out.append(Path(env).expanduser())
    out.append((cwd or Path.cwd()) / LOCAL_NAME)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    out.append(base / "skysift" / "config.toml")
    return out


def find_config(explicit: Path | None = None) -> Path | None:
    """The configuration file to use, or ``None`` when there is none.

    Parameters
    ----------
    explicit : Path, optional
        A file named with ``--config``; it must exist.

    Returns
    -------
    Path or None

    Raises
    ------
    InputError
        If ``explicit`` or ``$SKYSIFT_CONFIG`` names a file that does not exist.
    """
    if explicit is not None:
        if not explicit.is_file():
            msg = f"{explicit}: configuration file not found (--config)"
            raise InputError(msg)
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env and not Path(env).expanduser().is_file():
        msg = f"{env}: configuration file not found (${CONFIG_ENV})"
        raise InputError(msg)
    for path in config_candidates():
        if path.is_file():
            return path
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_site(where: str, value: Any) -> list[float]:
    if not isinstance(value, list) or len(value) != 3 or not all(map(_is_number, value)):
        msg = f"{where}: site must be 3 numbers [latitude, longitude, height_m], got {value!r}"
        raise InputError(msg)
    lat, lon, height = (float(v) for v in value)
    if not all(map(math.isfinite, (lat, lon, height))):
        msg = f"{where}: site must be finite numbers, got {value!r}"
        raise InputError(msg)
    if not -90.0 <= lat <= 90.0:
        msg = f"{where}: site latitude must be within ±90 degrees, got {lat}"
        raise InputError(msg)
    if not -180.0 <= lon <= 360.0:
        msg = f"{where}: site longitude must be within -180..360 degrees (east positive), got {lon}"
        raise InputError(msg)
    if not -500.0 <= height <= 20000.0:
        msg = f"{where}: site height must be within -500..20000 m, got {height}"
        raise InputError(msg)
    return [lat, lon, height]


def _check_offset(where: str, value: Any) -> str:
    """``'+hh:mm'`` from ``'+01:00'``, ``'-0330'``, ``'+05'`` or a number of hours."""
    if _is_number(value) and math.isfinite(value):
        minutes = round(60 * value)
    elif isinstance(value, str) and (m := _OFFSET_RE.match(value.strip())):
        minutes = 60 * int(m["h"]) + int(m["m"] or 0)
        minutes = -minutes if m["sign"] == "-" else minutes
    else:
        msg = f"{where}: utc_offset must be '+hh:mm' or hours east of UTC, got {value!r}"
        raise InputError(msg)
    if not -12 * 60 <= minutes <= 14 * 60:
        msg = f"{where}: utc_offset must be within -12:00..+14:00, got {value!r}"
        raise InputError(msg)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _check_settings(path: Path, section: str, table: Any, *, nested: bool = False) -> dict:
    """Validated settings of one table; a sub-table ``[section.COMMAND]`` is one command's."""
    if not isinstance(table, dict):
        msg = f"{path}: [{section}] must be a table of settings, got {table!r}"
        raise InputError(msg)
    out: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        where = f"{path}: [{section}] {raw_key}"
        if isinstance(value, dict):
            if nested:
                msg = f"{where}: expected a value, got a table"
                raise InputError(msg)
            # [stations.NAME.COMMAND]: settings of one command only (e.g. streaks' threshold)
            out[raw_key] = _check_settings(path, f"{section}.{raw_key}", value, nested=True)
            continue
        if key in NOT_STATION_KEYS:
            msg = f"{where}: {raw_key!r} cannot be set in a configuration file"
            raise InputError(msg)
        if key == "site":
            value = _check_site(where, value)
        elif key == "fps":
            if not _is_number(value) or not 0 < value <= 10000:
                msg = f"{where}: fps must be a number of frames/s in (0, 10000], got {value!r}"
                raise InputError(msg)
        elif key == "utc_offset":
            value = _check_offset(where, value)
        out[key] = value
    return out


def load_config(path: Path) -> Config:
    """Read and validate a configuration file.

    Parameters
    ----------
    path : Path
        A TOML file with an optional ``[defaults]`` table and ``[stations.NAME]`` tables.

    Returns
    -------
    Config

    Raises
    ------
    InputError
        If the file cannot be read or parsed, has an unknown top-level table,
        a malformed value (``site`` not 3 numbers, a latitude outside ±90, a
        non-positive ``fps``, a bad ``utc_offset``) or a default station that
        is not defined; the message names the file and the key.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        msg = f"{path}: not valid TOML: {' '.join(str(err).split())}"
        raise InputError(msg) from err
    except OSError as err:
        msg = f"{path}: cannot read the configuration file: {err.strerror or err}"
        raise InputError(msg) from err
    unknown = sorted(set(doc) - {"defaults", "stations"})
    if unknown:
        msg = (
            f"{path}: unknown table or key {unknown[0]!r} (expected [defaults] and [stations.NAME])"
        )
        raise InputError(msg)
    raw_defaults = doc.get("defaults", {})
    if isinstance(raw_defaults, dict):
        raw_defaults = dict(raw_defaults)
        default_station = raw_defaults.pop("station", None)
    else:
        default_station = None
    defaults = _check_settings(path, "defaults", raw_defaults)
    raw_stations = doc.get("stations", {})
    if not isinstance(raw_stations, dict):
        msg = f"{path}: stations must be tables [stations.NAME], got {raw_stations!r}"
        raise InputError(msg)
    stations = {
        name: _check_settings(path, f"stations.{name}", table)
        for name, table in raw_stations.items()
    }
    if default_station is not None:
        if not isinstance(default_station, str) or default_station not in stations:
            known = ", ".join(sorted(stations)) or "none"
            msg = (
                f"{path}: [defaults] station {default_station!r} is not defined (stations: {known})"
            )
            raise InputError(msg)
    return Config(path=path, stations=stations, defaults=defaults, default_station=default_station)


def resolve_settings(config: Config | None, station: str | None = None) -> Settings:
    """The settings in force: ``[defaults]`` overlaid with the chosen station's table.

    Parameters
    ----------
    config : Config or None
        The loaded file (``None`` when there is none).
    station : str, optional
        The ``--station`` name (default: ``[defaults] station``).

    Returns
    -------
    Settings

    Raises
    ------
    InputError
        If a station is named and there is no configuration file, or the file
        does not define it (the message lists the known stations).
    """
    if config is None:
        if station is not None:
            looked = ", ".join(str(p) for p in config_candidates())
            msg = f"--station {station}: no configuration file found (looked in {looked})"
            raise InputError(msg)
        return Settings()
    name = station if station is not None else config.default_station
    values = dict(config.defaults)
    if name is not None:
        if name not in config.stations:
            known = ", ".join(sorted(config.stations)) or "none"
            msg = f"{config.path}: unknown station {name!r} (stations: {known})"
            raise InputError(msg)
        for key, value in config.stations[name].items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = values[key] | value  # [defaults.COMMAND] then [stations.NAME.COMMAND]
            else:
                values[key] = value
    return Settings(path=config.path, station=name, values=values)


def _is_option(param: Any) -> bool:
    # typer vendors its own click: test by duck type, not click.Option
    return getattr(param, "param_type_name", "") == "option"


def _walk(group: Any, prefix: tuple[str, ...] = ()):  # noqa: ANN202
    """(path of names, command) for every leaf command under ``group`` (a click group)."""
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):
            yield from _walk(cmd, (*prefix, name))
        elif cmd is not None:
            yield (*prefix, name), cmd


def build_default_map(group: Any, settings: Settings) -> dict[str, Any]:
    """Click's ``default_map`` giving each command's options the settings' values.

    Parameters
    ----------
    group : click.Group
        The root command (``skysift``; click as vendored by typer).
    settings : Settings
        The resolved settings.

    Returns
    -------
    dict
        Nested ``{command: {option: value}}`` (``{"train": {"bolide": {...}}}``
        for sub-groups), only for commands that have the option; a command's
        own table (``[stations.NAME.streaks]``) overrides the station's values
        for that command. Values are checked with the option's type.

    Raises
    ------
    InputError
        If a key is the option of no command, a command table names no
        command or holds an option that command lacks, or a value does not
        convert to the option's type; the message names the file and the key.
    """
    flat = {k: v for k, v in settings.values.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in settings.values.items() if isinstance(v, dict)}
    commands = [names for names, _ in _walk(group) if len(names) == 1]
    for table in tables:
        if (table,) not in commands:
            known = ", ".join(sorted(n[0] for n in commands))
            msg = f"{settings.path}: {table}: no command {table!r} (commands: {known})"
            raise InputError(msg)
    used: set[str] = set()
    default_map: dict[str, Any] = {}
    for names, cmd in _walk(group):
        own = tables.get(names[0], {}) if len(names) == 1 else {}
        values = flat | own
        options = {p.name for p in cmd.params if _is_option(p)}
        if unknown := sorted(set(own) - options):
            msg = (
                f"{settings.path}: [{names[0]}] {unknown[0]}: "
                f"skysift {names[0]} has no option {unknown[0]!r}"
            )
            raise InputError(msg)
        ctx = typer.Context(cmd)
        for param in cmd.params:
            if not _is_option(param) or param.name not in values:
                continue
            value = values[param.name]
            try:
                # convert as the command line would (typer's runtime coercion)
                runtime = getattr(param, "get_runtime_param", None)
                if runtime is not None:
                    runtime().coerce(value, param=param, ctx=ctx)
            except (typer.BadParameter, TypeError, ValueError) as err:
                where = f"{settings.path}: {param.name}"
                msg = f"{where}: invalid value {value!r} for {' '.join(names)} {param.opts[0]}"
                msg += f": {getattr(err, 'message', err)}"
                raise InputError(msg) from err
            node = default_map
            for name in names:
                node = node.setdefault(name, {})
            node[param.name] = value
            used.add(param.name)
    unknown = sorted(set(flat) - used - set(SPECIAL_KEYS))
    if unknown:
        where = f"{settings.path}: {unknown[0]}"
        msg = f"{where}: no command has an option {unknown[0]!r} (e.g. site, fps, utc_offset)"
        raise InputError(msg)
    return default_map


def apply_utc_offset(time: str | None, offset: str | None) -> str | None:
    """Append a station's UTC offset to a ``--time`` written without one.

    Parameters
    ----------
    time : str or None
        The ``--time`` text.
    offset : str or None
        ``'+hh:mm'`` (east of UTC positive).

    Returns
    -------
    str or None
        ``time`` unchanged when either is missing, the text has a zone
        (``Z``, ``UTC``, ``+hh:mm``) or no time of day; else ``time + offset``.
    """
    if time is None or offset is None:
        return time
    if _HAS_ZONE_RE.search(time) or not _HAS_CLOCK_RE.search(time):
        return time
    return time.strip() + offset


# -- skysift config show / path ------------------------------------------------------------

config_app = typer.Typer(
    help="The site/camera configuration file and its named stations.", no_args_is_help=True
)


def _format_value(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(f"{v:g}" if _is_number(v) else str(v) for v in value)
    return str(value)


@config_app.command("show")
def show_cmd(ctx: typer.Context) -> None:
    """Print the configuration file in use, its stations and the option defaults they set."""
    root = ctx.find_root()
    settings: Settings = root.meta.get("skysift.settings", Settings())
    config: Config | None = root.meta.get("skysift.config")
    if config is None:
        looked = ", ".join(str(p) for p in config_candidates())
        typer.echo(f"no configuration file (looked in {looked})")
        return
    typer.echo(f"configuration: {config.path}")
    typer.echo(f"stations: {', '.join(sorted(config.stations)) or 'none'}")
    is_default = settings.station is not None and settings.station == config.default_station
    default = " (default)" if is_default else ""
    typer.echo(f"station: {settings.station or 'none'}{default}")
    for key, value in settings.values.items():
        for k, v in value.items() if isinstance(value, dict) else [(None, value)]:
            typer.echo(f"  {key if k is None else f'{key}.{k}'} = {_format_value(v)}")
    default_map = root.default_map or {}
    for names, cmd in _walk(root.command):
        node: Any = default_map
        for name in names:
            node = node.get(name, {}) if isinstance(node, dict) else {}
        opts = [
            f"{p.opts[0]} {_format_value(node[p.name])}"
            for p in cmd.params
            if _is_option(p) and p.name in node
        ]
        if opts:
            typer.echo(f"skysift {' '.join(names)}: {' '.join(opts)}")


@config_app.command("path")
def path_cmd(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="List every place searched.")] = False,
) -> None:
    """Print the configuration file in use (exit 1 when there is none)."""
    config: Config | None = ctx.find_root().meta.get("skysift.config")
    if all_:
        for path in config_candidates():
            typer.echo(f"{path}{'  (exists)' if path.is_file() else ''}")
        return
    if config is None:
        raise typer.Exit(1)
    typer.echo(str(config.path))
