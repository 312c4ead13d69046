"""The DSO page in a real headless Chromium: ellipses drawn per verdict, toggled by checkboxes.

Like ``test_web_e2e.py`` (skipped without chromium, chromedriver or the web
extra). The plate solve is replaced by a known WCS (``test_web_dso.py``'s
synthetic M81 frame); the rest is the real job, API and page. A screenshot goes
to ``test-artifacts/web/dso.png``.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _skip_reason() -> str | None:
    if CHROMIUM is None:
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not Path(DRIVER).is_file():
        return "chromedriver is not installed (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        return f"the web extra is not installed ({err})"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_web_dso import make_m81_png, patch_fast_dso  # noqa: E402 - same frame, same mock


def _post(url: str, data: bytes, content_type: str) -> dict:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The app served by uvicorn on a free loopback port (solve mocked); yields its URL."""
    import uvicorn

    patch_fast_dso(monkeypatch)

    from skysift.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(tmp_path / "webdata")
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    t_end = time.monotonic() + 20
    while not srv.started and time.monotonic() < t_end:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--disable-dev-shm-usage",
                 "--window-size=1280,900", f"--user-data-dir={tmp_path / 'chromium'}"):  # fmt: skip
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _n_ellipses(driver, verdict: str | None = None) -> int:
    sel = "#dso-overlay ellipse" + (f'[data-verdict="{verdict}"]' if verdict else "")
    return len(driver.find_elements(By.CSS_SELECTOR, sel))


def test_dso_page_toggles_ellipses_by_verdict(server, browser, tmp_path):
    path, _ = make_m81_png(tmp_path)
    up = _post(f"{server}/api/uploads?filename=m81.png", path.read_bytes(), "image/png")
    job = _post(f"{server}/api/jobs", json.dumps({"kind": "dso", "image": up["id"]}).encode(),
                "application/json")  # fmt: skip
    t_end = time.monotonic() + 120
    while _get(f"{server}/api/jobs/{job['id']}")["state"] not in ("done", "failed"):
        assert time.monotonic() < t_end, "the DSO job did not finish"
        time.sleep(0.2)
    d = _get(f"{server}/api/jobs/{job['id']}/dso")
    objs = [o for o in d["objects"] if o["type"] != "*"]
    n_by = {v: sum(o["verdict"] == v for o in objs) for v in d["verdicts"]}
    assert n_by["visible"] >= 1

    browser.get(f"{server}/#/job/{job['id']}")
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)
    wait.until(lambda b: _n_ellipses(b) > 0)
    # visible, marginal and unidentified are drawn at first; not visible is not
    assert _n_ellipses(browser, "visible") == n_by["visible"]
    assert _n_ellipses(browser, "not visible") == 0
    m81 = browser.find_element(By.CSS_SELECTOR, '#dso-overlay ellipse[data-label="M81"]')
    assert float(m81.get_attribute("cx")) == pytest.approx(127.5, abs=1.0)
    assert float(m81.get_attribute("rx")) == pytest.approx(
        next(o["major_px"] for o in objs if o["label"] == "M81") / 2, rel=1e-3
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#dso-table tr[data-label]")
    assert "M81" in [r.get_attribute("data-label") for r in rows]
    # toggles: "not visible" on draws them, "visible" off removes M81
    browser.find_element(By.CSS_SELECTOR, 'input[data-verdict="not visible"]').click()
    assert _n_ellipses(browser, "not visible") == n_by["not visible"]
    browser.find_element(By.CSS_SELECTOR, 'input[data-verdict="visible"]').click()
    assert _n_ellipses(browser, "visible") == 0
    assert not browser.find_elements(By.CSS_SELECTOR, '#dso-table tr[data-label="M81"]')
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.CSS_SELECTOR, 'input[data-verdict="visible"]').click()
    browser.save_screenshot(str(ARTIFACTS / "dso.png"))
