"""Web app hardening: Host names of a non-loopback bind, error.log without tracebacks, deleting uploads."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from pathlib import Path

import pytest

DATA = Path(__file__).parents[1] / "data"
LONG = DATA / "astride_streak" / "long.fits"


def _client_of(app, base_url: str = "http://127.0.0.1"):
    """A started TestClient of ``app`` (as conftest's ``make_client``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient warns about httpx: not ours
        from fastapi.testclient import TestClient

    client = TestClient(app, base_url=base_url, raise_server_exceptions=False)
    client.__enter__()
    return client


def _served_app(monkeypatch, tmp_path, host: str, extra=()):
    """The app ``serve(host, ...)`` would run (uvicorn is not started)."""
    import uvicorn

    from skysift.web.app import serve

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    kwargs = {"allowed_hosts": list(extra)} if extra else {}
    serve(host, 8000, tmp_path / "data", echo=lambda _m: None, **kwargs)
    assert seen["host"] == host
    return seen["app"]


def _status(client, host: str) -> int:
    return client.get("/api/info", headers={"host": host}).status_code


# ---------------------------------------------------------------- Host check
def test_other_bind_address_keeps_the_host_check(monkeypatch, tmp_path):
    client = _client_of(_served_app(monkeypatch, tmp_path, "127.0.0.2"))
    try:
        assert _status(client, "rebind.attacker.example") == 400  # DNS rebinding
        assert _status(client, "rebind.attacker.example:8000") == 400
        assert _status(client, "127.0.0.2:8000") == 200  # its own address
        assert _status(client, "localhost:8000") == 200
        assert _status(client, "10.1.2.3:8000") == 400  # not an address it was bound to
    finally:
        client.__exit__(None, None, None)


def test_every_interface_answers_to_addresses_not_to_names(monkeypatch, tmp_path):
    client = _client_of(_served_app(monkeypatch, tmp_path, "0.0.0.0", extra=["Obs-PC.lan"]))
    try:
        assert _status(client, "192.168.1.20:8000") == 200  # reached by an address
        assert _status(client, "[fe80::1]:8000") == 200
        assert _status(client, "obs-pc.lan:8000") == 200  # a name allowed explicitly
        assert _status(client, "evil.example") == 400
        assert _status(client, "192.168.1.20.evil.example") == 400
    finally:
        client.__exit__(None, None, None)


def test_any_host_only_when_asked(monkeypatch, tmp_path):
    from skysift.web.app import allowed_hosts_for

    assert "*" not in allowed_hosts_for("0.0.0.0")
    assert "*" not in allowed_hosts_for("192.168.1.20")
    assert allowed_hosts_for("fe80::1")[-2:] == ["fe80::1", "[fe80::1]"]
    client = _client_of(_served_app(monkeypatch, tmp_path, "192.168.1.20", extra=["*"]))
    try:
        assert _status(client, "anything.example") == 200
    finally:
        client.__exit__(None, None, None)


def test_serve_says_which_hosts_it_answers_to(monkeypatch, tmp_path):
    import uvicorn

    from skysift.web.app import serve

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    lines: list[str] = []
    serve("127.0.0.2", 8000, tmp_path / "d", echo=lines.append)
    text = "\n".join(lines)
    assert "WARNING" in text and "answering to Host: 127.0.0.1, localhost" in text
    assert "127.0.0.2" in text and "*" not in text


# ---------------------------------------------------------------- error.log
def _failing_runner(job, folder, progress):
    progress("reading", 0.1)
    secret = folder.parent.parent / "uploads" / "0123456789ab" / "frame.fits"
    msg = f"cannot decode {secret}"
    raise ValueError(msg)


def test_error_log_is_served_without_traceback_or_paths(
    make_client, wait_job, monkeypatch, tmp_path, caplog
):
    runners = pytest.importorskip("skysift.web.runners")
    monkeypatch.setitem(runners.RUNNERS, "streaks", _failing_runner)
    client = make_client()
    with caplog.at_level(logging.WARNING, logger="skysift.web"):
        job = client.post("/api/jobs", json={"kind": "streaks", "sample": "streaks-demo"}).json()
        job = wait_job(client, job["id"])
    assert job["state"] == "failed"
    assert job["error"] == "unexpected error (ValueError): cannot decode frame.fits"
    for download in (False, True):
        r = client.get(f"/api/jobs/{job['id']}/files/error.log", params={"download": download})
        assert r.status_code == 200
        assert "cannot decode frame.fits" in r.text
        assert "Traceback" not in r.text and str(tmp_path) not in r.text
        assert "/" not in r.text.replace("(skysift serve)", "")
    # the full traceback stays on the server: its log and the job folder
    on_disk = (tmp_path / "data" / "jobs" / job["id"] / "error.log").read_text()
    assert "Traceback" in on_disk and str(tmp_path) in on_disk
    logged = [r for r in caplog.records if job["id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_strip_paths():
    from skysift.web.jobs import strip_paths

    root = Path("/srv/sky data")
    text = "/srv/sky data/uploads/ab/x.fits: bad; see /usr/lib/py/site.py; 1/2 and a / b"
    assert strip_paths(text, root) == "x.fits: bad; see site.py; 1/2 and a / b"


# ---------------------------------------------------------------- deleting uploads
def test_delete_upload(client, upload, tmp_path):
    uid = upload(client, LONG).json()["id"]
    assert (tmp_path / "data" / "uploads" / uid / "long.fits").is_file()
    r = client.delete(f"/api/uploads/{uid}")
    assert r.status_code == 200 and r.json() == {"deleted": uid}
    assert client.get(f"/api/uploads/{uid}").status_code == 404
    assert client.get("/api/uploads").json() == []
    assert not (tmp_path / "data" / "uploads" / uid).exists()
    assert client.delete(f"/api/uploads/{uid}").status_code == 404
    assert client.delete("/api/uploads/..").status_code in (404, 405)
    r = client.delete("/api/uploads/0123456789ab")
    assert r.status_code == 404 and "no such upload" in r.json()["detail"]


def test_delete_upload_is_refused_across_origins(client, upload):
    uid = upload(client, LONG).json()["id"]
    r = client.delete(f"/api/uploads/{uid}", headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    assert client.get(f"/api/uploads/{uid}").status_code == 200


def test_upload_of_a_queued_job_cannot_be_deleted(make_client, upload):
    client = make_client(start_worker=False)  # the job stays queued
    uid = upload(client, LONG).json()["id"]
    job = client.post("/api/jobs", json={"kind": "streaks", "images": [uid]}).json()
    r = client.delete(f"/api/uploads/{uid}")
    assert r.status_code == 409
    assert f"used by job {job['id']}" in r.json()["detail"] and "queued" in r.json()["detail"]
    assert client.get(f"/api/uploads/{uid}").status_code == 200


def test_upload_of_a_running_job_cannot_be_deleted(make_client, upload, wait_job, monkeypatch):
    runners = pytest.importorskip("skysift.web.runners")
    release = threading.Event()

    def slow_runner(job, folder, progress):
        progress("working", 0.5)
        assert release.wait(30)
        return {"n_images": len(job["params"]["images"])}

    monkeypatch.setitem(runners.RUNNERS, "streaks", slow_runner)
    client = make_client()
    uid = upload(client, LONG).json()["id"]
    other = upload(client, LONG).json()["id"]
    job = client.post("/api/jobs", json={"kind": "streaks", "images": [uid]}).json()
    t_end = time.monotonic() + 20
    while client.get(f"/api/jobs/{job['id']}").json()["state"] != "running":
        assert time.monotonic() < t_end
        time.sleep(0.02)
    r = client.delete(f"/api/uploads/{uid}")
    assert r.status_code == 409 and "running" in r.json()["detail"]
    assert client.delete(f"/api/uploads/{other}").status_code == 200  # not used: deleted
    release.set()
    assert wait_job(client, job["id"])["state"] == "done"
    assert client.delete(f"/api/uploads/{uid}").status_code == 200
    assert client.get("/api/uploads").json() == []


def test_serve_allow_host_reaches_the_host_check(monkeypatch, tmp_path):
    """``skysift serve --allow-host NAME``: the app answers to NAME and still refuses others."""
    import uvicorn

    from skysift.cli import main

    with warnings.catch_warnings():  # starlette prefers httpx2; the warning is not ours
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    monkeypatch.setattr("typer.echo", lambda msg="", **kw: None)
    args = ["serve", "--host", "192.168.0.10", "--allow-host", "skysift.lan"]
    assert main([*args, "--data-dir", str(tmp_path / "d")]) == 0
    client = TestClient(apps[0], base_url="http://127.0.0.1")
    assert client.get("/api/info", headers={"host": "skysift.lan:8000"}).status_code == 200
    assert client.get("/api/info", headers={"host": "192.168.0.10:8000"}).status_code == 200
    assert client.get("/api/info", headers={"host": "rebind.attacker.example"}).status_code == 400
