"""Bundled sample data (real frames with their licences)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from skysift.errors import InputError
from skysift.io.frame import Site

__all__ = ["Sample", "sample", "samples"]


@dataclass(frozen=True)
class Sample:
    """A bundled sample: its file, site and provenance."""

    name: str
    path: Path
    description: str
    site: Site | None
    source: str
    licence: str


def samples() -> dict[str, Sample]:
    """Return every bundled sample by name."""
    root = resources.files("skysift.data") / "samples"
    index = json.loads((root / "samples.json").read_text(encoding="utf-8"))
    out = {}
    for name, d in index.items():
        site = Site.from_dict(d["site"]) if d.get("site") else None
        out[name] = Sample(
            name, Path(str(root / d["file"])), d["description"], site, d["source"], d["licence"]
        )
    return out


def sample(name: str = "magic-allsky") -> Sample:
    """Return one bundled sample.

    Raises
    ------
    InputError
        If there is no sample of that name (the message lists the names).
    """
    all_samples = samples()
    try:
        return all_samples[name]
    except KeyError:
        msg = f"no bundled sample {name!r}; available: {', '.join(sorted(all_samples))}"
        raise InputError(msg) from None
