"""The ``skysift`` command line: a thin shell over the library, one module per system.

Every :class:`skysift.errors.SkysiftError` becomes a one-line message on
stderr (``skysift: error: ...``) and a non-zero exit code; Ctrl+C exits 130.
"""

from __future__ import annotations

import logging
import sys
import warnings

import typer

from skysift.cli import core, bolide, streaks, stars, movers, stamps, dso, night  # noqa: F401, I001  isort: skip  (register the commands, in --help order)
from skysift.cli.app import app, echo_err
from skysift.errors import SkysiftError

__all__ = ["app", "console", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skysift`` console script; returns the exit code."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("skysift: %(message)s"))
    log = logging.getLogger("skysift")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            # one line per warning, without the library's source line
            warnings.showwarning = _one_line_warning
            rc = app(args=argv, standalone_mode=False)
    except SkysiftError as err:
        echo_err(f"skysift: error: {err}")
        return err.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        echo_err("skysift: interrupted")
        return 130
    except typer.TyperException as err:  # usage errors (bad option, missing argument)
        show = getattr(err, "show", None)
        if show is not None:
            show()
        else:
            echo_err(f"skysift: error: {err}")
        return int(getattr(err, "exit_code", 2))
    finally:
        log.removeHandler(handler)
    if rc == 130:  # typer turns Ctrl+C into Exit(130) and returns the code
        echo_err("skysift: interrupted")
    return rc if isinstance(rc, int) else 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001, ARG001
    ours = category.__module__.startswith("skysift") or category is UserWarning
    kind = "" if ours else f"{category.__name__}: "
    echo_err(f"skysift: warning: {kind}{message}")


def console() -> None:
    """The ``skysift`` console script."""
    sys.exit(main())
