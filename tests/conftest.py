"""Shared fixtures: paths of the real frames shipped in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the real sky frames (see tests/data/README.md for provenance)."""
    return DATA
