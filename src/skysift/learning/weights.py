"""Weights registry: every shipped model says where it came from and how good it is.

A set of weights is three files side by side in ``skysift/learning/weights/``
(or any folder, for your own):

- ``<name>.safetensors``: the ``state_dict``, with the card embedded in the
  safetensors metadata (key ``skysift_card``);
- ``<name>.json``: the model card as data (:class:`Weights`), including the
  SHA-256 of the safetensors file, checked at every load;
- ``<name>.md``: the same card for humans.

:data:`WEIGHTS` maps names to cards, read from the JSON files of the package
folder (small text files; nothing is downloaded, ever). ONNX files are not
shipped: :func:`skysift.learning.compression.onnx_session_for` builds one at
first use into the cache folder (keeps the package small), and
:func:`export_onnx` writes one wherever asked (e.g. beside the weights).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from skysift.errors import InputError
from skysift.learning.compression import export_onnx
from skysift.outputs.files import sha256_file

__all__ = [
    "WEIGHTS",
    "WEIGHTS_DIR",
    "Weights",
    "export_onnx",
    "load_weights",
    "refresh_registry",
    "save_weights",
    "sha256_file",
    "weights_info",
]

#: Folder of the shipped weights and their cards.
WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass
class Weights:
    """Model card of one set of weights (torchvision-style ``Weights`` entry).

    Attributes
    ----------
    name : str
        Registry name, also the file stem.
    file : str
        Safetensors file name, relative to the card's folder.
    sha256 : str
        Hex SHA-256 of the file (checked at load).
    model : str
        Name in :data:`skysift.learning.models.MODELS`.
    config : dict
        Model constructor arguments (``build_model(model, **config)``).
    normalisation : dict
        Input normalisation used at training time (see
        :class:`skysift.learning.inference.Normalisation`), e.g.
        ``{"name": "arcsinh"}``.
    metrics : dict
        Evaluation results, e.g. ``{"auc": 0.991, "tpr_at_fpr_1e-3": 0.93}``,
        with the evaluation set described in ``recipe``.
    recipe : dict
        Training recipe: ``TrainConfig`` of each phase, data sources, seeds.
    seed : int or None
    command : str
        The exact command that reproduces the file.
    size : int
        File size in bytes.
    description : str
    """

    name: str
    file: str
    sha256: str
    model: str
    config: dict = field(default_factory=dict)
    normalisation: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    seed: int | None = None
    command: str = ""
    size: int = 0
    description: str = ""
    folder: Path | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> Path:
        """Absolute path of the safetensors file."""
        return (self.folder or WEIGHTS_DIR) / self.file

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable card (without the folder)."""
        d = dataclasses.asdict(self)
        d.pop("folder")
        return d

    @classmethod
    def from_json(cls, path: str | Path) -> Weights:
        """Read a ``<name>.json`` card.

        Raises
        ------
        InputError
            If the file is missing or not a valid card.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(**data, folder=path.parent)
        except FileNotFoundError:
            msg = f"model card {path} does not exist"
            raise InputError(msg) from None
        except (json.JSONDecodeError, TypeError) as exc:
            msg = f"model card {path} is not valid: {exc}"
            raise InputError(msg) from exc

    def markdown(self) -> str:
        """Human-readable model card."""
        lines = [
            f"# {self.name}",
            "",
            self.description or "(no description)",
            "",
            "| field | value |",
            "|---|---|",
            f"| model | `{self.model}` |",
            f"| file | `{self.file}` ({self.size} bytes) |",
            f"| sha256 | `{self.sha256}` |",
            f"| seed | {self.seed} |",
            f"| normalisation | `{json.dumps(self.normalisation)}` |",
            "",
            "## Architecture",
            "",
            "```json",
            json.dumps(self.config, indent=2),
            "```",
            "",
            "## Metrics",
            "",
        ]
        lines += [f"- {k}: {v}" for k, v in self.metrics.items()] or ["(none recorded)"]
        lines += [
            "",
            "## Training recipe",
            "",
            "```json",
            json.dumps(self.recipe, indent=2, default=str),
            "```",
            "",
            "## Reproduce",
            "",
            "```sh",
            self.command or "(not recorded)",
            "```",
            "",
        ]
        return "\n".join(lines)


def _scan(folder: Path) -> dict[str, Weights]:
    out: dict[str, Weights] = {}
    if folder.is_dir():
        for card in sorted(folder.glob("*.json")):
            try:
                w = Weights.from_json(card)
            except InputError:
                continue  # a broken card must not break `import skysift.learning`
            out[w.name] = w
    return out


#: Registered weights by name, from the JSON cards in :data:`WEIGHTS_DIR`.
WEIGHTS: dict[str, Weights] = _scan(WEIGHTS_DIR)


def refresh_registry() -> dict[str, Weights]:
    """Re-read the cards of :data:`WEIGHTS_DIR` into :data:`WEIGHTS` (after adding files)."""
    WEIGHTS.clear()
    WEIGHTS.update(_scan(WEIGHTS_DIR))
    return WEIGHTS


def save_weights(
    model: nn.Module,
    path: str | Path,
    card: Weights | dict[str, Any] | None = None,
) -> Weights:
    """Write ``<stem>.safetensors``, ``<stem>.json`` and ``<stem>.md`` for ``model``.

    Parameters
    ----------
    model : nn.Module
        A model of :mod:`skysift.learning.models` (its ``name`` and ``config``
        go into the card).
    path : str or Path
        Target ``.safetensors`` path (the suffix is added if missing); its
        stem is the weights name unless the card gives one.
    card : Weights or dict, optional
        Card fields to record: ``normalisation``, ``metrics``, ``recipe``,
        ``seed``, ``command``, ``description``, ``name``. ``file``,
        ``sha256``, ``size``, ``model`` and ``config`` are filled in here.

    Returns
    -------
    Weights
        The card written to ``<stem>.json``.
    """
    # torch is the optional learn extra: imported on use
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    fields = card.to_dict() if isinstance(card, Weights) else dict(card or {})
    known = {f.name for f in dataclasses.fields(Weights)} - {"folder"}
    unknown = set(fields) - known
    if unknown:
        msg = f"unknown model-card fields {sorted(unknown)}; valid: {sorted(known)}"
        raise InputError(msg)
    fields.update(
        name=fields.get("name") or path.stem,
        file=path.name,
        sha256="",
        size=0,
        model=getattr(model, "name", type(model).__name__),
        config=dict(getattr(model, "config", {})),
    )
    w = Weights(**fields, folder=path.parent)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"skysift_card": json.dumps(w.to_dict(), default=str)})
    w.sha256, w.size = sha256_file(path), path.stat().st_size
    path.with_suffix(".json").write_text(json.dumps(w.to_dict(), indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(w.markdown())
    return w


def weights_info(name_or_path: str | Path) -> Weights:
    """Card of registered weights (by name) or of a ``.safetensors``/``.json`` path.

    A safetensors file without a JSON card beside it gets the card embedded
    in its metadata (then without a SHA-256 to check).

    Raises
    ------
    InputError
        If the name is not registered and no such file exists; the message
        lists the registered names.
    """
    if isinstance(name_or_path, str) and name_or_path in WEIGHTS:
        return WEIGHTS[name_or_path]
    path = Path(name_or_path)
    if path.suffix not in (".safetensors", ".json"):
        path = path.with_name(path.name + ".safetensors")
    card = path.with_suffix(".json")
    if card.is_file():
        return Weights.from_json(card)
    st = path.with_suffix(".safetensors")
    if not st.is_file():
        msg = (
            f"weights {str(name_or_path)!r} not found: no registered name "
            f"(registered: {sorted(WEIGHTS)}) and no file {st}"
        )
        raise InputError(msg)
    try:
        # torch is the optional learn extra: imported on use
        from safetensors import safe_open

        with safe_open(str(st), framework="pt") as fh:
            meta = fh.metadata() or {}
        data = json.loads(meta["skysift_card"])
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupted file
        msg = f"weights file {st} is corrupted or not a skysift weights file: {exc}"
        raise InputError(msg) from exc
    data.update(sha256="", file=st.name)
    return Weights(**data, folder=st.parent)


def load_weights(name_or_path: str | Path, *, verify: bool = True) -> nn.Module:
    """Build the model of a card and load its weights (eval mode). Never downloads.

    Parameters
    ----------
    name_or_path : str or Path
        A name in :data:`WEIGHTS`, or the path of a ``.safetensors`` file
        (with its ``.json`` card beside it for the SHA-256 check).
    verify : bool, optional
        Check the SHA-256 of the file against the card. Default True.

    Returns
    -------
    nn.Module

    Raises
    ------
    InputError
        If the weights are unknown, the file is missing, its SHA-256 differs
        from the card (corrupted or changed file), or it cannot be read.
    """
    # torch is the optional learn extra: imported on use
    from safetensors.torch import load_file

    # needs torch (the learn extra): imported on use
    from skysift.learning.models import build_model

    w = weights_info(name_or_path)
    path = w.path
    if not path.is_file():
        msg = f"weights file {path} of {w.name!r} is missing (nothing is downloaded; reinstall skysift or re-run: {w.command or 'n/a'})"
        raise InputError(msg)
    if verify and w.sha256:
        got = sha256_file(path)
        if got != w.sha256:
            msg = f"weights file {path} is corrupted or changed: sha256 {got} differs from the card's {w.sha256}"
            raise InputError(msg)
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        msg = f"weights file {path} cannot be read: {exc}"
        raise InputError(msg) from exc
    model = build_model(w.model, **w.config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        msg = f"weights file {path} does not fit model {w.model!r} with config {w.config}: {exc}"
        raise InputError(msg) from exc
    return model.eval()
