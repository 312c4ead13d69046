"""Fixtures of the web app tests: an app over a temporary data folder, job polling, star pairs."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")

#: Five bright stars of tests/data/magic_allsky/20180817_0055.fits (= the bundled sample):
#: pixel positions (0-based) read off the frame where a person would click, and names.
MAGIC_PAIRS = [
    (561.5, 651.4, "Vega"),
    (580.2, 442.3, "Altair"),
    (703.4, 633.5, "Deneb"),
    (420.5, 224.1, "Kaus Australis"),
    (944.2, 535.8, "Alpheratz"),
    (788.0, 879.0, "Polaris"),
]


def _test_client_class():
    # starlette's TestClient warns that it prefers httpx2; the warning is not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_client(**create_app_kwargs)``: a started TestClient over ``tmp_path/data``."""
    from skysift.web.app import create_app

    TestClient = _test_client_class()
    opened = []

    def make(**kwargs: Any):
        app = create_app(tmp_path / "data", **kwargs)
        client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for c in opened:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    """A TestClient of the app with default settings."""
    return make_client()


def _wait_job(client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll a job until it is done or failed; return its record."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    msg = f"job {job_id} did not finish in {timeout} s"
    raise AssertionError(msg)


def _upload(client, path: Path, name: str | None = None):
    """POST a file to /api/uploads; return the response."""
    return client.post(
        "/api/uploads", params={"filename": name or path.name}, content=path.read_bytes()
    )


@pytest.fixture
def wait_job():
    """``wait_job(client, job_id, timeout=120)``: poll until done or failed."""
    return _wait_job


@pytest.fixture
def upload():
    """``upload(client, path, name=None)``: POST a file to /api/uploads."""
    return _upload


@pytest.fixture
def magic_pairs() -> list[tuple[float, float, str]]:
    """Hand-identified stars of the bundled MAGIC frame: (x, y, name)."""
    return list(MAGIC_PAIRS)
