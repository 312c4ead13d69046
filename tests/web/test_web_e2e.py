"""End-to-end tests: the web app served by uvicorn, driven in a real headless Chromium.

They need Debian's ``chromium`` and ``chromium-driver`` (CI installs them) and
selenium (the web extra); without them they are skipped with the reason.
Screenshots of each step go to ``test-artifacts/web/`` at the repository root.
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
DATA = ROOT / "tests" / "data"
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
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app served by uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    from skysift.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(tmp_path_factory.mktemp("webdata"))
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium at 1280x800 (flags that keep it quiet on a closed network)."""
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    # A 1280x800 viewport (the window size would include the browser's own bars).
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False},
    )
    driver.implicitly_wait(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _api(server: str, path: str):
    with urllib.request.urlopen(server + path, timeout=30) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def _wait(driver, css: str, timeout: float = 60):
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, css) if d.find_elements(By.CSS_SELECTOR, css) else False
        )
    )


def _shot(driver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"web_{name}.png"))


def _no_horizontal_scroll(driver) -> None:
    width = driver.execute_script("return document.documentElement.scrollWidth")
    client = driver.execute_script("return document.documentElement.clientWidth")
    assert width <= client, f"horizontal scrolling: page {width} px wide in a {client} px window"


def _start(driver, server: str, kind: str) -> None:
    driver.get(server + "/#/")
    _wait(driver, "#start-form")
    driver.find_element(By.CSS_SELECTOR, f"input[name=kind][value={kind}]").click()


def _wait_job_done(driver, timeout: float) -> str:
    script = (
        "const e = document.querySelector('#job-head .state'); return e ? e.dataset.state : '';"
    )
    WebDriverWait(driver, timeout, poll_frequency=0.3).until(
        lambda d: d.execute_script(script) in ("done", "failed")
    )
    return driver.execute_script(script)


def _job_id(driver) -> str:
    return driver.current_url.rsplit("/", 1)[-1]


def test_failed_job_shows_a_useful_message(browser, server):
    _start(browser, server, "calibrate")
    _no_horizontal_scroll(browser)
    _shot(browser, "start")
    browser.find_element(By.ID, "file-image").send_keys(str(DATA / "iceact_allsky" / "cloudy.fits"))
    WebDriverWait(browser, 30).until(
        lambda d: "cloudy.fits: image" in d.find_element(By.ID, "status-image").text
    )
    browser.find_element(By.ID, "run-btn").click()
    assert _wait_job_done(browser, 60) == "failed"
    err = _wait(browser, "#job-error")
    assert "The job failed" in err.text and "Traceback" not in err.text
    assert "site" in err.text or "stars" in err.text
    assert browser.find_element(By.ID, "manual-link").is_displayed()  # the way out
    _no_horizontal_scroll(browser)
    _shot(browser, "failed_job")


def test_manual_calibration_on_the_magic_frame(browser, server, magic_pairs):
    from skysift.calibration.catalog import resolve_star

    _start(browser, server, "calibrate")
    Select(browser.find_element(By.ID, "sample-select")).select_by_value("magic-allsky")
    assert browser.find_element(By.ID, "site-lat").get_attribute("value") == "28.7619"
    Select(browser.find_element(By.ID, "mode")).select_by_value("manual")
    browser.find_element(By.ID, "run-btn").click()
    assert _wait_job_done(browser, 60) == "done"
    job_id = _job_id(browser)
    _wait(browser, "#manual-link").click()
    _wait(browser, "#sky-chart g.cat-star")
    img = _wait(browser, "#frame-img")
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", img
        )
    )
    _no_horizontal_scroll(browser)
    for i, (x, y, name) in enumerate(magic_pairs):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
        w, h = img.size["width"], img.size["height"]
        # Selenium offsets are from the element's centre; pixel x covers [x - 0.5, x + 0.5].
        dx = (x + 0.5) / 1392 * w - w / 2
        dy = (y + 0.5) / 1040 * h - h / 2
        ActionChains(browser).move_to_element_with_offset(
            img, round(dx), round(dy)
        ).click().perform()
        _wait(browser, "#pending-mark", 10)
        star = browser.find_element(
            By.CSS_SELECTOR, f"#sky-chart g.cat-star[data-hip='{resolve_star(name)}'] circle"
        )
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", star)
        ActionChains(browser).move_to_element(star).click().perform()
        WebDriverWait(browser, 10).until(
            lambda d, n=i + 1: (
                len(d.find_elements(By.CSS_SELECTOR, "#pairs-table tr[data-star]")) == n
            )
        )
        if i == 0:
            _shot(browser, "manual_first_pair")
    # Remove the last pair and fit the rest: at least four pairs stay.
    rows = browser.find_elements(By.CSS_SELECTOR, "#pairs-table tr[data-star]")
    rows[-1].find_element(By.CSS_SELECTOR, "button.remove").click()
    assert (
        len(browser.find_elements(By.CSS_SELECTOR, "#pairs-table tr[data-star]"))
        == len(magic_pairs) - 1
    )
    browser.find_element(By.ID, "fit-btn").click()
    rms_el = _wait(browser, "#pairs-rms", 90)
    shown = float(rms_el.text.split()[0])
    job = _api(server, f"/api/jobs/{job_id}")
    cal = job["result"]["calibration"]
    assert cal["source"] == "manual" and cal["n_pairs"] == len(magic_pairs) - 1
    assert cal["pairs_rms_px"] < 2.0 and shown == pytest.approx(cal["pairs_rms_px"], abs=0.01)
    assert cal["astrometric_rms_px"] < 2.0 and cal["n_matched"] > 300
    browser.execute_script("window.scrollTo(0, 0)")
    _shot(browser, "manual_calibration")
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    _shot(browser, "manual_fit")
    # The calibration view now shows the manual fit with the identified stars.
    browser.get(f"{server}/#/job/{job_id}")
    _wait(browser, "#fit-numbers")
    assert "manual" in browser.find_element(By.ID, "fit-numbers").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plot-resid circle.pt")) > 300
    _no_horizontal_scroll(browser)
    _shot(browser, "calibration")


def test_streak_result(browser, server):
    _start(browser, server, "streaks")
    browser.find_element(By.ID, "file-images").send_keys(str(DATA / "astride_streak" / "long.fits"))
    WebDriverWait(browser, 30).until(
        lambda d: "long.fits: image" in d.find_element(By.ID, "status-images").text
    )
    Select(browser.find_element(By.ID, "method")).select_by_value("classical")
    browser.find_element(By.ID, "run-btn").click()
    assert _wait_job_done(browser, 60) == "done"
    row = _wait(browser, "#streak-list tr[data-stem=long]")
    row.click()
    table = _wait(browser, "#streak-table")
    assert len(table.find_elements(By.CSS_SELECTOR, "tr")) == 2  # header + the one streak
    mask = browser.find_element(By.ID, "streak-mask")
    WebDriverWait(browser, 10).until(
        lambda d: d.execute_script("return arguments[0].naturalWidth", mask) == 512
    )
    _no_horizontal_scroll(browser)
    _shot(browser, "streaks")


@pytest.mark.slow
def test_bolide_sample_to_light_curve(browser, server):
    samples = {s["name"]: s for s in _api(server, "/api/samples")}
    if not samples["bolide-demo"]["available"]:
        pytest.skip(samples["bolide-demo"]["reason"])
    _start(browser, server, "bolide")
    Select(browser.find_element(By.ID, "sample-select")).select_by_value("bolide-demo")
    browser.find_element(By.ID, "run-btn").click()
    _wait(browser, "#job-head")
    # Live progress: a stage and a percentage while it runs.
    stage = "const e = document.getElementById('job-stage'); return e ? e.textContent : '';"
    WebDriverWait(browser, 60, poll_frequency=0.2).until(
        lambda d: d.execute_script(stage) not in ("", "starting", "queued")
    )
    _shot(browser, "bolide_progress")
    assert _wait_job_done(browser, 300) == "done"
    _wait(browser, "#lightcurve-plot circle.pt")
    points = browser.find_elements(By.CSS_SELECTOR, "#lightcurve-plot circle.pt")
    assert len(points) >= 10
    job = _api(server, f"/api/jobs/{_job_id(browser)}")
    assert job["result"]["n_points"] >= 10
    # Values on hover.
    target = points[len(points) // 2]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
    ActionChains(browser).move_to_element(target).perform()
    tip = _wait(browser, ".tip")
    WebDriverWait(browser, 5).until(lambda d: "mag" in tip.text and tip.is_displayed())
    # The frame viewer follows the slider.
    slider = browser.find_element(By.ID, "frame-slider")
    first = browser.find_element(By.ID, "overlay-img").get_attribute("src")
    browser.execute_script(
        "arguments[0].value = arguments[0].max; arguments[0].dispatchEvent(new Event('input'))",
        slider,
    )
    assert browser.find_element(By.ID, "overlay-img").get_attribute("src") != first
    links = {
        a.text: a.get_attribute("href")
        for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")
    }
    for text in ("light curve (ECSV)", "light curve (PNG)", "report (HTML)"):
        with urllib.request.urlopen(links[text], timeout=30) as r:  # noqa: S310 - loopback only
            assert r.status == 200
    # Clicking a point shows its frame (the head in the motion zone) beside its value.
    ActionChains(browser).move_to_element(target).click().perform()
    assert browser.find_element(By.ID, "overlay-img").get_attribute("src") != first
    _no_horizontal_scroll(browser)
    _shot(browser, "bolide")
