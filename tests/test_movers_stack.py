"""Tests of the fast shift-and-stack search (skysift.movers.stack) and of RA/Dec in run_movers."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.time import Time
from astropy.wcs import WCS

from skysift.errors import InputError
from skysift.io.frame import Frame
from skysift.movers import pipeline, stack
from skysift.movers.ades import read_ades_psv

FWHM = 2.5
SIG = FWHM / 2.3548


def _cube(n, shape, movers, rng, sigma=5.0):
    """Noise frames (sky 100, σ 5) with Gaussian-PSF movers ``(x0, y0, vx, vy, flux)``."""
    h, w = shape
    cube = rng.normal(100.0, sigma, (n, h, w)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    for x0, y0, vx, vy, f in movers:
        for k in range(n):
            r2 = (xx - x0 - vx * k) ** 2 + (yy - y0 - vy * k) ** 2
            cube[k] += f * np.exp(-r2 / (2 * SIG * SIG)) / (2 * np.pi * SIG * SIG)
    return cube


def _stack_exact(psi, phi, t, vel):
    """The brute-force search (the module's search before it was made fast), as reference.

    For each velocity the T shifted ψ images are summed in frame order; best stacked
    SNR and its velocity index per start pixel.
    """
    n, h, w = psi.shape
    off = stack._offsets(t, vel)
    pad = int(np.abs(off).max()) if off.size else 0
    pp = np.zeros((n, h + 2 * pad, w + 2 * pad), np.float32)
    pp[:, pad : pad + h, pad : pad + w] = psi
    best = np.full((h, w), -np.inf, np.float32)
    arg = np.zeros((h, w), np.int32)
    acc = np.empty((h, w), np.float32)
    better = np.empty((h, w), bool)
    for i in range(vel.shape[0]):
        dx, dy = off[i, 0]
        np.copyto(acc, pp[0, pad + dy : pad + dy + h, pad + dx : pad + dx + w])
        for k in range(1, n):
            dx, dy = off[i, k]
            np.add(acc, pp[k, pad + dy : pad + dy + h, pad + dx : pad + dx + w], out=acc)
        np.greater(acc, best, out=better)
        np.copyto(best, acc, where=better)
        np.copyto(arg, i, where=better)
    return best * stack._norm(phi), arg


def _f5(sigma, n):
    """Single-frame 5σ flux: matched-filter SNR 5 in one difference image (median template)."""
    return 5 * sigma * np.sqrt(1 + np.pi / (2 * n)) * np.sqrt(4 * np.pi * SIG * SIG)


@pytest.mark.parametrize("block", [None, 1, 2, 3, 4])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fast_search_equals_exact(block, n_threads):
    rng = np.random.default_rng(11)
    psi = rng.normal(0, 1, (12, 40, 56)).astype(np.float32)
    phi = np.full_like(psi, 0.5)
    vel = np.vstack([rng.uniform(-2.5, 2.5, (150, 2)), [[0.0, 0.0], [1.0, -1.0]]])
    t = np.arange(12.0)
    best0, arg0 = _stack_exact(psi, phi, t, vel)
    best1, arg1 = stack._stack_all(psi, phi, t, vel, block=block, group=32, rows=8,
                                   n_threads=n_threads)  # fmt: skip
    np.testing.assert_allclose(best1, best0, rtol=0, atol=2e-6 * np.abs(best0).max())
    # the chosen velocity is the exact one, or another with the same sum within rounding
    off = stack._offsets(t, vel)
    same = np.all(off[arg1] == off[arg0], axis=(-2, -1))
    assert same.mean() > 0.99
    best2, none = stack._stack_all(psi, phi, t, vel, block=block, arg_map=False, rows=16)
    assert none is None
    np.testing.assert_allclose(best2, best0, rtol=0, atol=2e-6 * np.abs(best0).max())
    # the best velocity recomputed at chosen pixels (the search keeps only the SNR map)
    ys, xs = np.nonzero(best0 >= np.percentile(best0, 98))
    np.testing.assert_array_equal(stack._args_at(psi, t, vel, ys, xs), arg0[ys, xs])


def test_shift_and_stack_same_trajectories_as_exact_search(monkeypatch):
    rng = np.random.default_rng(5)
    n = 12
    f = 0.8 * _f5(5.0, n)
    cube = _cube(n, (56, 64), [(12.3, 14.6, 1.1, 0.5, f), (50.2, 40.1, -0.9, 0.7, f)], rng)
    kw = {"rate_range": (0.5, 1.5), "n_rates": 6, "n_angles": 24, "threshold": 6.0, "warn": False}
    fast = stack.shift_and_stack(cube, **kw)

    def exact(psi, phi, t, vel, **_):
        return _stack_exact(psi, phi, t, vel)

    monkeypatch.setattr(stack, "_stack_all", exact)
    ref = stack.shift_and_stack(cube, **kw)
    assert len(fast) == len(ref) >= 2
    for c in ("x0", "y0", "vx", "vy", "snr"):
        np.testing.assert_allclose(fast[c], ref[c], rtol=1e-4, atol=1e-4)


def test_faint_mover_below_single_frame_limit_recovered():
    # 1 mag below the single-frame 5σ limit (single-frame SNR 2): stacked SNR 2·√20 ≈ 9
    rng = np.random.default_rng(2)
    n = 20
    x0, y0, vx, vy = 14.4, 20.7, 1.05, 0.62
    f = _f5(5.0, n) * 10 ** (-0.4 * 1.0)
    cube = _cube(n, (64, 64), [(x0, y0, vx, vy, f)], rng)
    res = stack.shift_and_stack(cube, rate_range=(0.5, 1.5), n_rates=11, n_angles=40,
                                threshold=6.0, max_candidates=5, warn=False)  # fmt: skip
    d = np.hypot(res["x0"] - x0, res["y0"] - y0)
    j = int(np.argmin(d))
    assert d[j] < 1.0
    rate = np.hypot(vx, vy)
    assert abs(res["rate"][j] - rate) / rate < 0.05
    assert res["snr"][j] > 6.0
    # each frame alone does not show it: its matched-filter SNR is about 2
    assert res["flux"][j] == pytest.approx(f, rel=0.3)


def _wcs(scale_arcsec, shape):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 20.0]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    w.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600]  # north up, east left
    return w


def _frames(with_wcs):
    rng = np.random.default_rng(3)
    n, shape = 10, (64, 64)
    x0, y0, vx, vy = 16.2, 20.4, 1.2, 0.9  # px per frame: 1.5 px, PA = atan2(-vx, vy)
    cube = _cube(n, shape, [(x0, y0, vx, vy, 1.5 * _f5(5.0, n))], rng)
    t0 = Time("2026-03-01T02:00:00", scale="utc")
    wcs = _wcs(2.0, shape)
    frames = [
        Frame(
            cube[k], time=t0 + 60.0 * k * u.s, exposure=30.0, meta={"wcs": wcs} if with_wcs else {}
        )  # fmt: skip
        for k in range(n)
    ]
    # 1.5 px/frame, 2″/px, one frame a minute: 180″/h
    return frames, wcs, (x0, y0, vx, vy), 1.5 * 2.0 * 60.0, np.degrees(np.arctan2(-vx, vy)) % 360


def _check_sky(res, wcs, truth, rate_h, pa):
    x0, y0, vx, vy = truth
    det = res.detections
    st = det[det["method"] == "stack"]
    assert len(st) >= 10
    tid = st["tracklet"][np.argmin(np.hypot(st["x"] - x0, st["y"] - y0))]
    tr = st[st["tracklet"] == tid]
    assert len(tr) == 10
    truth_sky = wcs.pixel_to_world(x0 + vx * tr["frame"], y0 + vy * tr["frame"])
    got = wcs.pixel_to_world(tr["x"], tr["y"])
    assert np.all(truth_sky.separation(got).arcsec < 2.0)  # < 1 px
    np.testing.assert_allclose(tr["ra"], got.ra.deg, atol=1e-9)
    assert np.all(np.abs(tr["rate_arcsec_h"] / rate_h - 1) < 0.05)
    assert np.all(np.abs((tr["pa"] - pa + 180) % 360 - 180) < 3.0)
    assert np.all(tr["time"] != "")


def test_run_movers_radec_from_frame_wcs(tmp_path):
    frames, wcs, truth, rate_h, pa = _frames(with_wcs=True)
    res = pipeline.run_movers(frames, tmp_path, method="stack", pixel_scale=2.0,
                              rate_range=(0.5, 2.5), n_rates=9, n_angles=36)  # fmt: skip
    _check_sky(res, wcs, truth, rate_h, pa)
    header, obs = read_ades_psv(res.files["psv"])
    assert len(obs) == len(res.detections)
    assert res.trajectories["rate_arcsec_h"][0] == pytest.approx(rate_h, rel=0.05)


def test_run_movers_calibrate_plate_solves_each_frame(monkeypatch):
    frames, wcs, truth, rate_h, pa = _frames(with_wcs=False)
    calls = []

    class _Solution:
        pass

    class _Result:
        def __init__(self):
            self.solution = _Solution()
            self.solution.wcs = wcs

    def fake_calibrate(frame, **kw):
        calls.append(kw)
        return _Result()

    # the calibration core's plate solve (tetra3rs / astrometry.net) is tested in
    # test_platesolve.py; here only that run_movers calls it per frame and uses its WCS
    monkeypatch.setattr(pipeline, "calibrate_frame", fake_calibrate)
    res = pipeline.run_movers(frames, None, method="stack", calibrate=True, pixel_scale=2.0,
                              rate_range=(0.5, 2.5), n_rates=9, n_angles=36)  # fmt: skip
    assert len(calls) == len(frames)
    assert calls[0]["mode"] == "narrow"
    assert calls[0]["fov_deg"] == pytest.approx(64 * 2.0 / 3600)
    _check_sky(res, wcs, truth, rate_h, pa)


def test_run_movers_calibrate_failure_warns(monkeypatch):
    from skysift.errors import CalibrationError

    frames, *_ = _frames(with_wcs=False)

    def failing(frame, **kw):
        msg = "no solution"
        raise CalibrationError(msg)

    monkeypatch.setattr(pipeline, "calibrate_frame", failing)
    with pytest.warns(UserWarning, match="plate solve failed"):
        res = pipeline.run_movers(frames[:5], None, method="stack", calibrate=True,
                                  rate_range=(0.5, 2.5), n_rates=5, n_angles=12)  # fmt: skip
    assert np.all(np.isnan(res.detections["ra"]))


def test_stack_errors():
    cube = np.zeros((4, 16, 16), np.float32)
    with pytest.raises(InputError, match="n_threads must be >= 1"):
        stack.shift_and_stack(cube, n_threads=0)
    with pytest.raises(InputError, match=r"velocities must have shape \(V, 2\)"):
        stack.shift_and_stack(cube, velocities=np.zeros((3, 3)))
    with pytest.raises(InputError, match="threshold must be > 0"):
        stack.shift_and_stack(cube, threshold=0)
    with pytest.raises(InputError, match="rate_range must be"):
        stack.shift_and_stack(cube, rate_range=(2.0, 1.0))
    with pytest.raises(InputError, match=r"must be a \(T, H, W\) sequence"):
        stack.shift_and_stack(cube[0])
    with pytest.raises(InputError, match="times must have one value per frame"):
        stack.shift_and_stack(cube, times=[0.0, 1.0])


def _det(frame, x, y):
    from skysift.movers.baseline import empty_detections

    t = empty_detections()
    for xi, yi in zip(np.atleast_1d(x), np.atleast_1d(y), strict=True):
        t.add_row({"frame": frame, "x": xi, "y": yi, "x1": xi, "y1": yi, "x2": xi, "y2": yi,
                   "flux": 1.0, "snr": 10.0, "length": 0.0, "angle": 0.0, "score": 0.9})  # fmt: skip
    return t


def test_static_detections_dropped_movers_kept():
    n = 10
    rng = np.random.default_rng(4)
    # per frame: a static source (jitter 0.3 px), a slow mover (0.8 px/frame), a fast one
    tables = [
        _det(k, [40 + rng.normal(0, 0.3), 10 + 0.8 * k, 5 + 6.0 * k], [30.0, 50.0, 8.0])
        for k in range(n)
    ]
    out = pipeline._drop_static(tables, n, FWHM)
    for k, t in enumerate(out):
        assert len(t) == 2
        np.testing.assert_allclose(sorted(t["x"]), sorted([10 + 0.8 * k, 5 + 6.0 * k]))
    # a source in only a few frames is kept
    few = [_det(k, [40.0], [30.0]) if k < 3 else _det(k, [], []) for k in range(n)]
    assert sum(len(t) for t in pipeline._drop_static(few, n, FWHM)) == 3


def test_flux_corrected_for_the_mover_in_the_median_template():
    # at ~1 px per frame the median of the 20 frames holds ~19 % of the mover's flux along
    # its track: uncorrected, psi/phi measured 0.82-0.87 of the true flux
    rng = np.random.default_rng(8)
    n = 20
    f = _f5(5.0, n)  # single-frame SNR 5, stacked ~22: flux error ~5 % each
    movers = [(10.3, 12.2, 0.9, 0.5, f), (60.6, 14.1, -0.8, 0.6, f),
              (12.2, 60.4, 0.7, -0.7, f), (70.1, 70.3, -0.9, -0.5, f)]  # fmt: skip
    cube = _cube(n, (96, 96), movers, rng)
    res = stack.shift_and_stack(cube, rate_range=(0.5, 1.5), n_rates=11, n_angles=60,
                                threshold=10.0, max_candidates=6, warn=False)  # fmt: skip
    ratio = []
    for x0, y0, *_ in movers:
        j = int(np.argmin(np.hypot(res["x0"] - x0, res["y0"] - y0)))
        ratio.append(res["flux"][j] / f)
    assert np.median(ratio) == pytest.approx(1.0, abs=0.08)
    assert np.all(np.abs(np.array(ratio) - 1) < 0.2)


def test_variance_grows_with_template_level():
    # shot-noise-like frames: variance = 4 * level / 100; sky 100 with a third of the
    # frame ramping to 180 (faint stars: below the 2x rule of the per-pixel variance)
    rng = np.random.default_rng(9)
    level = np.full((128, 128), 100.0, np.float32)
    level[:, 86:] = np.linspace(100.0, 180.0, 42)
    frames = level + rng.normal(0, 1, (12, 128, 128)) * 2.0 * np.sqrt(level / 100.0)
    _, var = stack.difference_images(frames.astype(np.float32))
    ratio = np.median(var[:, :, -4:]) / np.median(var[:, :, :40])  # truth ~1.75
    assert 1.4 < ratio < 2.1
    # read-noise-limited frames: no level dependence
    flat = level + rng.normal(0, 2.0, (12, 128, 128))
    _, var2 = stack.difference_images(flat.astype(np.float32))
    assert np.median(var2[:, :, -4:]) / np.median(var2[:, :, :40]) == pytest.approx(1.0, abs=0.15)
