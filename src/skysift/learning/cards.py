"""What every training recipe shares: JSON data configurations and weights saved with their card."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar

from skysift.errors import InputError

__all__ = ["JsonConfig", "card_header", "save_weights_with_card"]

#: Card fields a recipe passes on to :func:`skysift.learning.weights.save_weights`.
CARD_FIELDS = ("description", "normalisation", "metrics", "recipe", "seed", "command")


class JsonConfig:
    """Mixin for dataclass configurations that travel as JSON (tuples become lists).

    Subclasses set ``_label`` (e.g. ``"star data"``) for the error message.
    """

    _label: ClassVar[str] = "configuration"

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        InputError
            On unknown keys (the message lists the valid ones).
        """
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names
        if unknown:
            msg = f"unknown {cls._label} option(s) {sorted(unknown)}; valid: {sorted(names)}"
            raise InputError(msg)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def save_weights_with_card(
    model: Any,
    card: dict[str, Any],
    out: str | Path,
    name: str,
    markdown: Callable[[dict[str, Any], Any], str],
) -> Path:
    """Write ``<out>/<name>.safetensors``, ``.json`` (the card, with sha256) and ``.md``.

    The files are written by :func:`skysift.learning.weights.save_weights`;
    the ``.md`` is then replaced by ``markdown(card, model)``, the recipe's
    fuller card.

    Returns
    -------
    Path
        The ``.safetensors`` file.
    """
    # needs torch (the learn extra): imported on use
    from skysift.learning.weights import save_weights

    path = Path(out) / f"{name}.safetensors"
    kept = {k: card[k] for k in CARD_FIELDS if k in card}
    w = save_weights(model, path, dict(kept, name=name))
    path.with_suffix(".md").write_text(markdown(w.to_dict(), model))
    return path


def card_header(card: dict[str, Any], model: Any, note: str = "") -> list[str]:
    """Markdown lines opening a model card: title, description and architecture.

    Parameters
    ----------
    card : dict
        The saved card (``name``, ``description``, ``model``, ``config``,
        ``size``, ``sha256``).
    model : torch.nn.Module
        For the parameter count.
    note : str, optional
        Appended to the architecture line (e.g. how inference tiles).
    """

    n_par = sum(p.numel() for p in model.parameters())
    arch = (
        f"`{card['model']}` `{json.dumps(card['config'])}`: {n_par} parameters, "
        f"{card.get('size', 0) / 1024:.0f} KiB; sha256 `{card['sha256']}`."
    )
    return [
        f"# {card['name']}",
        "",
        card.get("description", ""),
        "",
        "## Architecture",
        "",
        arch + (f" {note}" if note else ""),
        "",
    ]
