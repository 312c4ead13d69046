"""The DSO job of the web app: upload an image, run ``run_dso``, list the objects with verdicts.

The plate solve is replaced by a known TAN WCS (a solve needs astrometry.net
and minutes); everything after it (catalogue, visibility, annotation, the
JSON of the page) is the real code. The image is synthetic: M81 drawn where
its catalogue ellipse falls, over noise, so its verdict is known.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from PIL import Image

from skysift.dso import catalog
from skysift.dso import pipeline as dso_pipeline
from skysift.dso.solve import FieldSolution
from skysift.simulation.sources import render_sersic
from skysift.web import dso as web_dso

SHAPE = (256, 256)
SCALE_DEG = 15.0 / 3600.0  # 15"/px: a 64' field, M81 (27' x 14') about 108 px long


def _m81_wcs() -> WCS:
    m81 = catalog.lookup("M81")[0]
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [float(m81["ra"]), float(m81["dec"])]
    w.wcs.crpix = [(SHAPE[1] + 1) / 2.0, (SHAPE[0] + 1) / 2.0]
    w.wcs.cd = SCALE_DEG * np.array([[-1.0, 0.0], [0.0, 1.0]])
    w.pixel_shape = (SHAPE[1], SHAPE[0])
    return w


def _solution(wcs: WCS) -> FieldSolution:
    return FieldSolution(wcs=wcs, shape=SHAPE, rms_px=0.3, n_matched=20, backend="test",
                         solve_time_s=0.0, matches=Table(names=("x", "y", "ra", "dec")))  # fmt: skip


def make_m81_png(tmp_path):
    """A 256 x 256 8-bit PNG: noise, a few stars and M81 on its catalogue ellipse."""
    wcs = _m81_wcs()
    objs = catalog.objects_in_field(wcs, SHAPE, include_stars=False)
    m81 = objs[list(objs["label"]).index("M81")]
    rng = np.random.default_rng(3)
    img = rng.normal(30.0, 3.0, SHAPE)
    a = 0.5 * float(m81["major_px"])
    q = float(m81["minor_px"] / m81["major_px"])
    img += render_sersic(SHAPE, float(m81["x"]), float(m81["y"]), 1.5e5, 1.0, a / 2.0,
                                  ellipticity=1 - q, pa=float(m81["theta_deg"]),
                                  backend="numpy", oversample=1)  # fmt: skip
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    for x, y in rng.uniform(10, 246, (15, 2)):
        img += 150.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2**2))
    path = tmp_path / "m81.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path, m81


@pytest.fixture
def m81_png(tmp_path):
    """(path, catalogue row of M81) of :func:`make_m81_png`."""
    return make_m81_png(tmp_path)


def patch_fast_dso(monkeypatch) -> None:
    """run_dso with the known WCS instead of a plate solve (and no learned detector)."""
    wcs = _m81_wcs()
    monkeypatch.setattr(dso_pipeline, "solve_image", lambda *a, **k: _solution(wcs))
    if "detector" in inspect.signature(dso_pipeline.run_dso).parameters:
        monkeypatch.setattr(
            web_dso, "run_dso", functools.partial(dso_pipeline.run_dso, detector=None)
        )


@pytest.fixture
def fast_dso(monkeypatch):
    """:func:`patch_fast_dso` for one test."""
    patch_fast_dso(monkeypatch)


def test_dso_job_lists_objects_with_verdicts(client, upload, wait_job, m81_png, fast_dso):
    path, m81 = m81_png
    up = upload(client, path)
    assert up.status_code == 201, up.text
    r = client.post("/api/jobs", json={"kind": "dso", "image": up.json()["id"], "fov": 1.07})
    assert r.status_code == 201, r.text
    job = wait_job(client, r.json()["id"])
    assert job["state"] == "done", job.get("error")
    assert job["result"]["counts"]["visible"] >= 1

    d = client.get(f"/api/jobs/{job['id']}/dso").json()
    assert d["shape"] == [256, 256]
    assert d["verdicts"] == ["visible", "marginal", "not visible", "unidentified"]
    by_label = {o["label"]: o for o in d["objects"]}
    row = by_label["M81"]
    assert row["verdict"] == "visible" and row["snr"] >= 5
    # the ellipse the page draws is the catalogue's, in the image's pixels
    assert row["x"] == pytest.approx(float(m81["x"]), abs=0.01)
    assert row["y"] == pytest.approx(float(m81["y"]), abs=0.01)
    assert row["major_px"] == pytest.approx(float(m81["major_px"]), rel=1e-6)
    assert abs(row["x"] - 127.5) < 1.0 and abs(row["y"] - 127.5) < 1.0  # M81 at the centre
    # every object has a verdict the page can toggle; nothing else in this field is drawn
    assert all(o["verdict"] in d["verdicts"] for o in d["objects"])
    others = [o for o in d["objects"] if o["label"] != "M81" and o["type"] not in ("*",)]
    assert all(o["verdict"] != "visible" for o in others if o["major_px"] < 20)
    assert d["counts"]["visible"] == sum(o["verdict"] == "visible" for o in d["objects"])
    for key in ("display", "annotated", "objects"):
        f = client.get(f"/api/jobs/{job['id']}/files/{d['files'][key]}")
        assert f.status_code == 200
    with Image.open(__import__("io").BytesIO(
        client.get(f"/api/jobs/{job['id']}/files/{d['files']['display']}").content
    )) as im:  # fmt: skip
        assert im.size == (256, 256)
    assert "CC-BY-SA-4.0" in d["credit"]


def test_dso_job_errors(client, upload, m81_png, tmp_path):
    path, _ = m81_png
    up = upload(client, path).json()
    r = client.post("/api/jobs", json={"kind": "dso", "image": up["id"], "ra": 10.0})
    assert r.status_code == 400 and "both ra and dec" in r.json()["detail"]
    r = client.post("/api/jobs", json={"kind": "dso"})
    assert r.status_code == 400 and "choose a frame" in r.json()["detail"]
    r = client.post("/api/jobs", json={"kind": "dso", "image": up["id"], "dec": 95.0, "ra": 1.0})
    assert r.status_code == 422
    streaks = client.post("/api/jobs", json={"kind": "streaks", "images": [up["id"]]}).json()
    r = client.get(f"/api/jobs/{streaks['id']}/dso")
    assert r.status_code == 400 and "not a dso job" in r.json()["detail"]
    with pytest.raises(web_dso.InputError, match="no DSO results yet"):
        web_dso.dso_view({"id": "x", "state": "failed"}, tmp_path)
