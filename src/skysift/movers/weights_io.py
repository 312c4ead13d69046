"""Saving and loading the mover mixture-of-experts weights (safetensors + model card).

The card follows :class:`skysift.learning.weights.Weights` (name, file,
SHA-256, config, metrics, recipe, command), written as ``<stem>.json`` and
``<stem>.md`` beside ``<stem>.safetensors``. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skysift.errors import InputError
from skysift.movers.model import MoverMoE
from skysift.outputs.files import atomic_path, sha256_file, write_json, write_with

__all__ = ["WEIGHTS_DIR", "load_moe", "save_moe", "update_card_metrics"]

#: Folder of the shipped mover weights.
WEIGHTS_DIR = Path(__file__).parent / "weights"
_COMMAND = "skysift train movers  (skysift.movers.train.train_movers('src/skysift/movers/weights'))"


def save_moe(
    model: MoverMoE, path: str | Path, recipe: dict[str, Any], metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``<stem>.safetensors`` with ``<stem>.json`` and ``<stem>.md`` cards.

    Parameters
    ----------
    model : MoverMoE
    path : str or Path
        The ``.safetensors`` path (its folder is created).
    recipe : dict
        Training recipe and timings (:func:`~skysift.movers.train.train_movers` info).
    metrics : dict, optional
        Evaluation results to record in the card.

    Returns
    -------
    Path
        The safetensors path.
    """
    # torch is the optional learn extra: imported on use
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"skysift_model": model.name})
    card = {
        "name": path.stem,
        "file": path.name,
        "sha256": sha256_file(path),
        "model": model.name,
        "config": model.config,
        "normalisation": {"name": "robust z-score, asinh(z/3); matched filter channel"},
        "metrics": metrics or {},
        "recipe": recipe,
        "command": _COMMAND,
        "size": path.stat().st_size,
        "description": (
            "Physics-informed mixture of experts (YOLOX-style + CenterNet-style heads, "
            "gating MLP, motion-prior input) for fast movers in sidereal, target-tracking "
            "and staring modes; trained on skysift.simulation.movers only."
        ),
    }
    write_json(card, path.with_suffix(".json"))
    md = [f"# {card['name']}", "", card["description"], "", "| field | value |", "|---|---|"]
    for k in ("model", "file", "sha256", "size", "command"):
        md.append(f"| {k} | `{card[k]}` |")
    md += ["", "## Config", "", "```json", json.dumps(card["config"], indent=2), "```"]
    md += ["", "## Recipe", "", "```json", json.dumps(recipe, indent=2, default=str), "```"]
    md += ["", "## Metrics", "", "```json", json.dumps(card["metrics"], indent=2), "```", ""]

    write_with(path.with_suffix(".md"), lambda tmp: tmp.write_text("\n".join(md), encoding="utf-8"))
    return path


def load_moe(name_or_path: str | Path = "mover_moe", *, verify: bool = True) -> MoverMoE:
    """Load the shipped (by name) or a saved (by path) mixture of experts, in eval mode.

    Parameters
    ----------
    name_or_path : str or Path, optional
        A stem in :data:`WEIGHTS_DIR` (default ``"mover_moe"``) or a ``.safetensors`` path.
    verify : bool, optional
        Check the SHA-256 against the card. Default True.

    Raises
    ------
    InputError
        If the file or its card is missing, or the checksum differs.
    """
    # torch is the optional learn extra: imported on use
    from safetensors.torch import load_file

    p = Path(name_or_path)
    if p.suffix != ".safetensors":
        p = WEIGHTS_DIR / f"{name_or_path}.safetensors"
    card_path = p.with_suffix(".json")
    if not p.is_file() or not card_path.is_file():
        have = sorted(q.stem for q in WEIGHTS_DIR.glob("*.safetensors"))
        msg = f"mover weights {str(name_or_path)!r} not found (need {p.name} and its .json); shipped: {have}"
        raise InputError(msg)
    card = json.loads(card_path.read_text())
    if verify and sha256_file(p) != card.get("sha256"):
        msg = f"SHA-256 of {p} differs from its card: file corrupt or replaced"
        raise InputError(msg)
    model = MoverMoE(**card.get("config", {}))
    model.load_state_dict(load_file(str(p)))
    model.eval()
    model.card = card  # type: ignore[attr-defined]
    return model


def update_card_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Record evaluation results in the ``.json`` card beside a ``.safetensors`` file.

    Raises
    ------
    InputError
        If the card is missing.
    """

    card_path = Path(path).with_suffix(".json")
    if not card_path.is_file():
        msg = f"no model card {card_path}"
        raise InputError(msg)
    card = json.loads(card_path.read_text())
    card["metrics"] = metrics
    return write_json(card, card_path)
