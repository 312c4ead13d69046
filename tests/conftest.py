"""Shared fixtures (paths of the real frames shipped in tests/data) and the slow-test switch.

Tests marked ``@pytest.mark.slow`` (over ~20 s on a 2-core runner) are skipped
by default; ``pytest --runslow`` runs everything, ``pytest -m slow`` only them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SLOW_REASON = "slow test (over ~20 s): run with --runslow, or -m slow for these alone"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow", action="store_true", default=False, help="also run the tests marked slow"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # a -m expression that names the marker ("slow", "slow or e2e") selects them itself
    if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path_factory, monkeypatch):
    """No skysift.toml of the developer's (~/.config/skysift) changes the CLI's defaults."""
    monkeypatch.delenv("SKYSIFT_CONFIG", raising=False)
    xdg = tmp_path_factory.getbasetemp() / "xdg-config"
    xdg.mkdir(exist_ok=True)  # astropy warns about a XDG_CONFIG_HOME that does not exist
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the real sky frames (see tests/data/README.md for provenance)."""
    return DATA


@pytest.fixture
def torch_one_thread():
    """One torch thread: two threads on a busy 2-core CI runner thrash (OpenMP spin-waits)."""
    torch = pytest.importorskip("torch", reason="torch is not installed (the learn extra)")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
