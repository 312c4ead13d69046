"""A local web app over skysift (``skysift serve``; needs the ``web`` extra).

Start an analysis (a bundled sample or uploaded files), follow its progress,
look at the calibration (and calibrate by hand from clicked star pairs), a
bolide's frames and light curve, or the streaks found in a set of images.
Every computation is a call of the same library functions as the CLI; see
:mod:`skysift.web.app` for the HTTP API and ``docs/web.md`` for a tour.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    # Lazy: importing skysift.web must not need fastapi (the web extra is optional).
    if name in __all__:
        # the web extra (fastapi): imported on use
        from skysift.web import app

        return getattr(app, name)
    msg = f"module 'skysift.web' has no attribute {name!r}"
    raise AttributeError(msg)
