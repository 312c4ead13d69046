"""Shared fixtures: paths of the real frames shipped in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the real sky frames (see tests/data/README.md for provenance)."""
    return DATA


@pytest.fixture
def torch_one_thread():
    """One torch thread: two threads on a busy 2-core CI runner thrash (OpenMP spin-waits)."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
