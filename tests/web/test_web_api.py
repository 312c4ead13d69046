"""API tests of the web app: every endpoint, bad uploads, path traversal, job life cycle."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.web.jobs import JobStore, Worker, user_message

DATA = Path(__file__).parents[1] / "data"
MAGIC = DATA / "magic_allsky" / "20180817_0055.fits"
LONG = DATA / "astride_streak" / "long.fits"
PNG = DATA / "umd_allsky" / "Bug-20191028.png"
# The classical finder: no weights needed, fast on a busy CI runner.
DEMO_STREAKS = {"kind": "streaks", "sample": "streaks-demo", "method": "classical"}


# ---------------------------------------------------------------- pages, info, samples
def test_index_and_static_assets_are_served_from_the_package(client):
    r = client.get("/")
    assert r.status_code == 200
    assert "/static/app.js" in r.text and "http" not in r.text.replace("http-equiv", "")
    for asset in ("app.js", "plot.js", "style.css"):
        a = client.get(f"/static/{asset}")
        assert a.status_code == 200 and len(a.text) > 500
        # Nothing is loaded from another site: the app runs offline.
        assert "https://" not in a.text and "cdn" not in a.text.lower()


def test_info_and_samples(client):
    info = client.get("/api/info").json()
    assert info["kinds"] == ["bolide", "calibrate", "dso", "streaks"]
    assert ".fits" in info["accepted"] and ".mp4" in info["accepted"]
    samples = {s["name"]: s for s in client.get("/api/samples").json()}
    assert samples["magic-allsky"]["available"] and samples["magic-allsky"]["kind"] == "calibrate"
    assert samples["streaks-demo"]["kind"] == "streaks"
    assert set(samples["bolide-demo"]) >= {"available", "reason"}


# ---------------------------------------------------------------- uploads
def test_upload_reads_metadata_for_prefilling(client):
    r = client.post("/api/uploads", params={"filename": LONG.name}, content=LONG.read_bytes())
    assert r.status_code == 201, r.text
    u = r.json()
    assert u["kind"] == "image" and u["shape"] == [512, 512] and u["size"] == LONG.stat().st_size
    assert u["time"].startswith("2002-07-26T19:36")  # from the FITS header
    assert u["site"]["lat"] == pytest.approx(-32.38, abs=0.01)
    assert client.get(f"/api/uploads/{u['id']}").json() == u
    assert [x["id"] for x in client.get("/api/uploads").json()] == [u["id"]]


def test_upload_png(client, upload):
    r = upload(client, PNG)
    assert r.status_code == 201 and r.json()["kind"] == "image", r.text


@pytest.mark.parametrize(
    ("name", "content", "status", "match"),
    [
        ("notes.txt", b"hello", 415, "not accepted"),
        ("evil.exe", b"MZ\x90\x00", 415, "not accepted"),
        ("fake.fits", b"this is not a FITS file at all" * 10, 415, "not a fits file"),
        ("fake.png", b"GIF89a" + b"\x00" * 100, 415, "not a image file"),
        ("empty.fits", b"", 400, "empty"),
    ],
)
def test_bad_uploads_are_refused(client, name, content, status, match):
    r = client.post("/api/uploads", params={"filename": name}, content=content)
    assert r.status_code == status
    assert match in r.json()["detail"]
    assert client.get("/api/uploads").json() == []  # nothing is left behind


@pytest.mark.parametrize("source", [MAGIC, PNG, DATA / "fmdt_meteors" / "2022_tauh_maxred.jpg"])
def test_truncated_uploads_are_refused(client, source):
    data = source.read_bytes()
    r = client.post(
        "/api/uploads", params={"filename": source.name}, content=data[: len(data) // 2]
    )
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "cannot be read" in detail and "Traceback" not in detail
    assert str(Path.cwd()) not in detail  # no server paths in messages
    assert client.get("/api/uploads").json() == []


def test_too_big_uploads_are_refused(make_client, tmp_path):
    client = make_client(max_upload_mb=0.1)
    r = client.post("/api/uploads", params={"filename": LONG.name}, content=LONG.read_bytes())
    assert r.status_code == 413 and "too big" in r.json()["detail"]

    # Without a Content-Length (chunked), the limit is enforced while streaming.
    def chunks():
        for _ in range(20):
            yield b"SIMPLE  =" + b"\x00" * 16_000

    r = client.post("/api/uploads", params={"filename": "big.fits"}, content=chunks())
    assert r.status_code == 413
    assert client.get("/api/uploads").json() == []
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_upload_file_names_cannot_escape(client, tmp_path):
    r = client.post(
        "/api/uploads", params={"filename": "../../../../tmp/x.fits"}, content=LONG.read_bytes()
    )
    assert r.status_code == 201
    u = r.json()
    assert u["name"] == "x.fits"
    assert (tmp_path / "data" / "uploads" / u["id"] / "x.fits").is_file()
    r = client.post("/api/uploads", params={"filename": "..\\..\\y.fits"}, content=b"SIMPLE  =")
    assert r.status_code == 400  # a sane name, but a truncated FITS file
    assert "y.fits" in r.json()["detail"]


@pytest.mark.parametrize("bad", ["..", "abc", "0123456789ab/../x", "ABCDEF012345"])
def test_upload_ids_are_checked(client, bad):
    assert client.get(f"/api/uploads/{bad}").status_code in (404, 405)


# ---------------------------------------------------------------- security
def test_path_traversal_is_refused(client, tmp_path, wait_job):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    job = client.post("/api/jobs", json=DEMO_STREAKS).json()
    assert wait_job(client, job["id"])["state"] == "done"
    folder = tmp_path / "data" / "jobs" / job["id"]
    os.symlink(secret, folder / "link.txt")
    base = f"/api/jobs/{job['id']}/files"
    assert client.get(f"{base}/streaks/summary.ecsv").status_code == 200
    for bad in [
        "../../../secret.txt",
        "..%2F..%2F..%2Fsecret.txt",
        "%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "streaks/../../../../secret.txt",
        "//etc/passwd",
        "%2Fetc%2Fpasswd",
        "..\\..\\secret.txt",
        "link.txt",  # a symbolic link out of the folder
        "job.json",  # the job's state holds server paths
        ".job.json.tmp",
        "streaks/%00summary.ecsv",
    ]:
        r = client.get(f"{base}/{bad}")
        assert r.status_code == 404, (bad, r.status_code)
        assert "TOP-SECRET" not in r.text
    for bad_id in ["..", "..%2F..", "0123456789abc", "../../etc"]:
        assert client.get(f"/api/jobs/{bad_id}/files/job.json").status_code == 404


def test_unknown_host_and_cross_origin_posts_are_refused(client):
    assert client.get("/api/info", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/api/info", headers={"host": "localhost:8000"}).status_code == 200
    r = client.post(
        "/api/jobs",
        json=DEMO_STREAKS,
        headers={"origin": "http://evil.example"},
    )
    assert r.status_code == 403
    # a sandboxed frame or a file:// page sends "Origin: null": another origin too
    r = client.post("/api/jobs", json=DEMO_STREAKS, headers={"origin": "null"})
    assert r.status_code == 403
    assert client.get("/api/jobs").json() == []


def test_large_json_bodies_are_refused(client):
    r = client.post(
        "/api/jobs",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


# ---------------------------------------------------------------- job requests
@pytest.mark.parametrize(
    ("req", "status", "match"),
    [
        ({"kind": "nope"}, 422, "kind"),
        ({"kind": "calibrate"}, 400, "choose a frame"),
        ({"kind": "calibrate", "sample": "streaks-demo"}, 400, "for streaks jobs"),
        ({"kind": "calibrate", "sample": "nope"}, 400, "no bundled sample"),
        ({"kind": "calibrate", "image": "0123456789ab"}, 404, "no such upload"),
        ({"kind": "calibrate", "image": "../../etc/passwd"}, 404, "no such upload"),
        (
            {"kind": "calibrate", "sample": "magic-allsky", "site": {"lat": 100, "lon": 0}},
            400,
            "latitude",
        ),
        ({"kind": "calibrate", "sample": "magic-allsky", "time": "yesterday"}, 400, "ISO 8601"),
        ({"kind": "streaks"}, 400, "choose the images"),
        ({"kind": "bolide"}, 400, "choose a video"),
        ({"kind": "streaks", "sample": "streaks-demo", "method": "magic"}, 400, "streak method"),
        ({"kind": "calibrate", "sample": "magic-allsky", "mode": "guess"}, 422, "mode"),
    ],
)
def test_bad_job_requests(client, req, status, match):
    r = client.post("/api/jobs", json=req)
    assert r.status_code == status, r.text
    assert match in r.json()["detail"]
    assert client.get("/api/jobs").json() == []


def test_an_image_is_not_a_video(client, upload):
    uid = upload(client, LONG).json()["id"]
    r = client.post("/api/jobs", json={"kind": "bolide", "video": uid})
    assert r.status_code == 400 and "not a video" in r.json()["detail"]


def test_unknown_jobs_are_404(client):
    for path in ("", "/calibration", "/stars", "/catalog", "/lightcurve", "/streaks"):
        assert client.get(f"/api/jobs/0123456789ab{path}").status_code == 404
    assert client.delete("/api/jobs/0123456789ab").status_code == 404


# ---------------------------------------------------------------- calibration
def test_calibrate_sample_job(client, wait_job):
    r = client.post("/api/jobs", json={"kind": "calibrate", "sample": "magic-allsky"})
    assert r.status_code == 201
    job = r.json()
    assert job["state"] == "queued" and "image" not in job["params"]  # no server paths
    job = wait_job(client, job["id"])
    assert job["state"] == "done", job["error"]
    c = job["result"]["calibration"]
    assert c["source"] == "automatic" and c["model_type"] == "fisheye"
    assert c["n_matched"] > 300 and c["astrometric_rms_px"] < 1.0

    view = client.get(f"/api/jobs/{job['id']}/calibration").json()
    assert view["frame"]["shape"] == [1040, 1392]
    assert view["frame"]["site"]["lat"] == pytest.approx(28.7619)
    vega = next(m for m in view["matches"] if m["name"] == "Vega")
    assert vega["x"] == pytest.approx(561.5, abs=1.5) and vega["y"] == pytest.approx(651.4, abs=1.5)

    cat = client.get(f"/api/jobs/{job['id']}/catalog", params={"max_mag": 2.0}).json()
    assert all(s["v_mag"] <= 2.0 and s["alt"] > 0 for s in cat["stars"])
    vega_cat = next(s for s in cat["stars"] if s["name"] == "Vega")
    # Where the fitted camera puts the catalogue star: on the detected star.
    assert np.hypot(vega_cat["x"] - vega["x"], vega_cat["y"] - vega["y"]) < 1.5
    assert client.get(f"/api/jobs/{job['id']}/catalog", params={"max_mag": 99}).status_code == 422

    stars = client.get(f"/api/jobs/{job['id']}/stars").json()
    assert len(stars) > 500 and set(stars[0]) == {"x", "y", "flux"}
    png = client.get(f"/api/jobs/{job['id']}/files/frame.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    dl = client.get(f"/api/jobs/{job['id']}/files/calibration/matches.ecsv", params={"download": 1})
    assert "attachment" in dl.headers["content-disposition"]
    assert client.get(f"/api/jobs/{job['id']}/lightcurve").status_code == 400  # wrong kind


def test_manual_calibration_from_pairs(client, wait_job, magic_pairs, tmp_path):
    job = client.post(
        "/api/jobs", json={"kind": "calibrate", "sample": "magic-allsky", "mode": "manual"}
    ).json()
    job = wait_job(client, job["id"])
    assert job["state"] == "done" and job["result"]["calibration"] is None
    jid = job["id"]
    view = client.get(f"/api/jobs/{jid}/calibration").json()
    assert view["calibration"] is None and view["matches"] == []

    pairs = [{"x": x, "y": y, "star": s} for x, y, s in magic_pairs]
    r = client.post(f"/api/jobs/{jid}/manual-fit", json={"pairs": pairs[:3]})
    assert r.status_code == 400 and "at least 4" in r.json()["detail"]
    r = client.post(f"/api/jobs/{jid}/manual-fit", json={"pairs": [*pairs[:4], pairs[0]]})
    assert r.status_code == 400 and "twice" in r.json()["detail"]
    bad = [*pairs[:4], {"x": 1, "y": 2, "star": "Nostar"}]
    r = client.post(f"/api/jobs/{jid}/manual-fit", json={"pairs": bad})
    assert r.status_code == 400 and "unknown star" in r.json()["detail"]

    r = client.post(f"/api/jobs/{jid}/manual-fit", json={"pairs": pairs})
    assert r.status_code == 200, r.text
    fit = r.json()
    assert fit["calibration"]["pairs_rms_px"] < 2.0
    assert all(p["residual_px"] < 2.0 for p in fit["pairs"])
    # Extended to every detection, as `skysift calibrate --pairs` does.
    assert fit["calibration"]["n_matched"] > 300 and fit["calibration"]["astrometric_rms_px"] < 2.0
    # Saved as the job's calibration, with pairs.csv usable by the CLI.
    job = client.get(f"/api/jobs/{jid}").json()
    assert job["result"]["calibration"]["source"] == "manual"
    view = client.get(f"/api/jobs/{jid}/calibration").json()
    assert view["calibration"]["method"] == "manual pairs"
    assert [p["star"] for p in view["pairs"]] == [s for _, _, s in magic_pairs]
    saved = tmp_path / "data" / "jobs" / jid / "calibration" / "pairs.csv"
    assert len(Table.read(saved, format="ascii.csv")) == len(magic_pairs)


def test_failed_job_shows_one_line_and_keeps_the_frame(client, upload, wait_job):
    # A cloudy IceAct frame without site: the all-sky calibration cannot run.
    uid = upload(client, DATA / "iceact_allsky" / "cloudy.fits").json()["id"]
    job = client.post("/api/jobs", json={"kind": "calibrate", "image": uid}).json()
    job = wait_job(client, job["id"])
    assert job["state"] == "failed"
    assert "\n" not in job["error"] and "Traceback" not in job["error"]
    assert "site" in job["error"] or "stars" in job["error"]
    # The frame was prepared: a manual calibration can still be started.
    assert client.get(f"/api/jobs/{job['id']}/calibration").json()["frame"]["shape"] == [480, 640]
    assert client.get(f"/api/jobs/{job['id']}/catalog").status_code == 400  # no site: says so


# ---------------------------------------------------------------- streaks
def test_streaks_job_on_an_uploaded_real_frame(client, upload, wait_job):
    uid = upload(client, LONG).json()["id"]
    job = client.post(
        "/api/jobs", json={"kind": "streaks", "images": [uid], "method": "classical"}
    ).json()
    job = wait_job(client, job["id"])
    assert job["state"] == "done", job["error"]
    assert job["result"]["n_streaks"] == 1
    items = client.get(f"/api/jobs/{job['id']}/streaks").json()
    assert len(items) == 1 and items[0]["name"] == "long.fits" and items[0]["error"] is None
    s = items[0]["streaks"][0]
    # The box measured by the original C pipeline: x 20..342, y 309..338.
    assert 15 < min(s["x1"], s["x2"]) < 30 and 330 < max(s["x1"], s["x2"]) < 350
    for key in ("image", "mask", "table_file"):
        r = client.get(f"/api/jobs/{job['id']}/files/{items[0][key]}")
        assert r.status_code == 200


def test_streaks_sample_job(client, wait_job):
    job = client.post("/api/jobs", json=DEMO_STREAKS).json()
    job = wait_job(client, job["id"])
    assert job["state"] == "done" and job["result"]["n_images"] == 3
    items = client.get(f"/api/jobs/{job['id']}/streaks").json()
    assert [i["name"] for i in items] == [f"streaks_0000{k}.fits" for k in range(3)]
    assert job["result"]["n_streaks"] >= 1


# ---------------------------------------------------------------- bolide (wiring, fast)
def _fake_run_bolide(
    video, out_dir, *, calibration=None, site=None, time=None, fps=None, progress=None
):
    """Writes the documented layout of run_bolide's outputs (the real one is tested e2e)."""
    from types import SimpleNamespace

    from PIL import Image

    out = Path(out_dir)
    (out / "overlays").mkdir(parents=True)
    for stage in ("read", "calibrate", "motion", "segment", "measure", "write"):
        progress(stage, 0.5)
    n = 5
    lc = Table(
        {
            "frame": np.arange(n),
            "t": np.arange(n) / 25.0,
            "x": np.linspace(10, 50, n),
            "y": np.linspace(20, 30, n),
            "mag": [-1.0, -2.0, np.nan, -1.5, -0.5],
            "mag_err": np.full(n, 0.05),
            "saturated": [False, True, False, False, False],
        }
    )
    lc["t"].unit = "s"
    lc.write(out / "lightcurve.ecsv", format="ascii.ecsv")
    for k in range(n):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(out / "overlays" / f"frame_{k:04d}.png")
    (out / "report.html").write_text("<html>report</html>")
    files = {"lightcurve": out / "lightcurve.ecsv", "report": out / "report.html"}
    return SimpleNamespace(lightcurve=lc, files=files, video=video, site=site, fps=fps)


def test_bolide_job_wiring(client, upload, wait_job, monkeypatch, tmp_path):
    runners = pytest.importorskip("skysift.web.runners")
    monkeypatch.setattr(runners, "run_bolide", _fake_run_bolide)
    cube = tmp_path / "clip.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(size=(4, 16, 16)).astype("f4")).writeto(cube)
    video = upload(client, cube).json()
    assert video["kind"] == "video"  # a cube is a sequence
    job = client.post(
        "/api/jobs",
        json={"kind": "bolide", "video": video["id"], "fps": 25, "site": {"lat": 28, "lon": -17}},
    ).json()
    job = wait_job(client, job["id"])
    assert job["state"] == "done", job["error"]
    # the peak is measured on unsaturated frames; the saturated one is a bright limit
    assert job["result"]["n_points"] == 5 and job["result"]["peak_mag"] == -1.5
    assert job["result"]["peak_mag_limit"] == -2.0
    assert job["result"]["files"]["report"] == "out/report.html"
    lc = client.get(f"/api/jobs/{job['id']}/lightcurve").json()
    assert [r["frame"] for r in lc["rows"]] == [0, 1, 2, 3, 4]
    assert lc["rows"][2]["mag"] is None  # NaN travels as null
    assert lc["overlays"][0] == "frame_0000.png" and len(lc["overlays"]) == 5
    assert lc["units"]["t"] == "s"
    r = client.get(f"/api/jobs/{job['id']}/files/out/report.html")
    assert r.status_code == 200 and "report" in r.text


# ---------------------------------------------------------------- jobs: list, delete, restart
def test_jobs_list_and_delete(client, wait_job):
    a = client.post("/api/jobs", json=DEMO_STREAKS).json()
    b = client.post("/api/jobs", json=DEMO_STREAKS).json()
    listed = client.get("/api/jobs").json()
    assert [j["id"] for j in listed] == [b["id"], a["id"]]  # newest first
    wait_job(client, a["id"])
    wait_job(client, b["id"])
    assert client.delete(f"/api/jobs/{a['id']}").json() == {"deleted": a["id"]}
    assert client.get(f"/api/jobs/{a['id']}").status_code == 404
    assert [j["id"] for j in client.get("/api/jobs").json()] == [b["id"]]


def test_worker_runs_jobs_in_order_and_survives_a_restart(tmp_path):
    store = JobStore(tmp_path / "jobs")
    seen = []

    def runner(job, folder, progress):
        progress("half way", 0.5)
        assert store.get(job["id"])["stage"] == "half way"
        seen.append(job["params"]["n"])
        if job["params"]["n"] == 2:
            raise ValueError("boom\nsecond line")
        return {"n": job["params"]["n"]}

    interrupted = store.create("fake", "was running", {"n": 0})
    store.update(interrupted["id"], state="running")
    queued = [store.create("fake", f"job {n}", {"n": n}) for n in (1, 2, 3)]
    worker = Worker(store, {"fake": runner})
    worker.start()  # as after a server restart
    try:
        t_end = time.monotonic() + 10
        while time.monotonic() < t_end and len(seen) < 3:
            time.sleep(0.02)
    finally:
        worker.stop()
    assert seen == [1, 2, 3]  # one after another, in order
    states = {j["id"]: j for j in store.list()}
    assert states[interrupted["id"]]["state"] == "failed"
    assert "server stopped" in states[interrupted["id"]]["error"]
    assert states[queued[0]["id"]]["result"] == {"n": 1}
    failed = states[queued[1]["id"]]
    assert failed["state"] == "failed" and failed["error"] == "unexpected error (ValueError): boom"
    assert "Traceback" in (tmp_path / "jobs" / failed["id"] / "error.log").read_text()
    assert (
        json.loads((tmp_path / "jobs" / queued[2]["id"] / "job.json").read_text())["state"]
        == "done"
    )


def test_user_message_is_one_line():
    from skysift.errors import NotEnoughStarsError

    assert user_message(NotEnoughStarsError("x: not enough stars\nmore")) == "x: not enough stars"
    assert user_message(KeyError()) == "unexpected error (KeyError)"


def test_results_survive_a_new_app(make_client, wait_job):
    first = make_client()
    job = first.post("/api/jobs", json=DEMO_STREAKS).json()
    wait_job(first, job["id"])
    second = make_client()  # same data folder, as after closing the browser or a restart
    again = second.get(f"/api/jobs/{job['id']}").json()
    assert again["state"] == "done" and again["result"]["n_images"] == 3
    assert len(second.get(f"/api/jobs/{job['id']}/streaks").json()) == 3


# ---------------------------------------------------------------- command line
def test_serve_command_binds_localhost_and_says_so(monkeypatch, tmp_path):
    import uvicorn

    from skysift.cli import main

    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(kw, app=app))
    lines = []
    monkeypatch.setattr("typer.echo", lambda msg="", **kw: lines.append(str(msg)))
    assert main(["serve", "--data-dir", str(tmp_path / "d"), "--port", "8123"]) == 0
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8123
    text = "\n".join(lines)
    assert "http://127.0.0.1:8123/" in text and "localhost only" in text
    lines.clear()
    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")]) == 0
    assert "WARNING" in "\n".join(lines)


def test_serve_help():
    from typer.testing import CliRunner

    from skysift.cli import app

    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "--data-dir" in r.output
