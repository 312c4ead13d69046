"""Meteors in video: path and speed, flux per frame, saturation, wake decay, real backgrounds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from skysift.calibration.fisheye import FisheyeModel
from skysift.errors import InputError
from skysift.simulation.background import load_background
from skysift.simulation.meteors import Flare, LightCurve, Meteor, MeteorVideo

# The fisheye model skysift fits to the MAGIC frame 20180817_0055 (rounded).
MAGIC_CAMERA = FisheyeModel(
    x0=725.97,
    y0=527.23,
    rotation=81.15,
    radial=(340.10, -3.92, -1.77),
    parity=-1,
    tilt=(-0.73, -0.17),
    shape=(1040, 1392),
)


def _centroid(img):
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    tot = img.sum()
    return (img * xx).sum() / tot, (img * yy).sum() / tot, tot


def test_head_follows_the_line_at_the_requested_speed():
    bg = np.full((240, 320), 100.0, np.float32)
    speed, fps = 180.0, 20.0
    m = Meteor((40.3, 180.7), (290.1, 50.2), speed=speed, light_curve=1.0, psf=2.5)
    video = MeteorVideo(bg, m, n_frames=12, fps=fps, exposure_s=0.04, zero_point=10.0, gain=None)
    frames, truth = video.render(rng=0)
    d = np.array([290.1 - 40.3, 50.2 - 180.7])
    u = d / np.hypot(*d)
    on = np.isfinite(truth["x"])
    assert on.sum() >= 10
    rel = np.c_[truth["x"][on] - 40.3, truth["y"][on] - 180.7]
    # on the line, at s = speed * t (mid-exposure)
    assert np.allclose(rel @ np.array([-u[1], u[0]]), 0, atol=1e-6)
    assert np.allclose(rel @ u, speed * truth["time_s"][on], atol=1e-6)
    # what is drawn: the centroid of each frame's light is the truth position
    for k in np.flatnonzero(on):
        x, y, _ = _centroid(frames[k] - 100.0)
        assert abs(x - truth["x"][k]) < 0.1 and abs(y - truth["y"][k]) < 0.1
        # the smear is the exposure's travel
        smear = np.hypot(
            truth["x_end"][k] - truth["x_start"][k], truth["y_end"][k] - truth["y_start"][k]
        )
        assert smear == pytest.approx(speed * 0.04, rel=1e-6)


def test_great_circle_through_the_fisheye_model():
    bg = np.zeros((1040, 1392), np.float32)
    omega, fps = 12.0, 25.0  # deg/s
    start, end = (60.0, 40.0), (25.0, 150.0)
    m = Meteor(start, end, speed=omega, light_curve=0.0, camera=MAGIC_CAMERA, psf=3.0)
    video = MeteorVideo(bg, m, n_frames=10, fps=fps, zero_point=10.0, gain=None)
    frames, truth = video.render(rng=0)
    alt, az = np.radians(truth["alt"]), np.radians(truth["az"])
    v = np.c_[np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)]

    def enu(a, z):
        a, z = np.radians(a), np.radians(z)
        return np.array([np.cos(a) * np.sin(z), np.cos(a) * np.cos(z), np.sin(a)])

    normal = np.cross(enu(*start), enu(*end))
    assert np.allclose(v @ normal, 0, atol=1e-9)  # on the great circle
    step = np.degrees(np.arccos(np.clip(np.sum(v[1:] * v[:-1], axis=1), -1, 1)))
    assert np.allclose(step, omega / fps, rtol=1e-9)  # at the angular speed
    sep0 = np.degrees(np.arccos(v @ enu(*start)))
    assert np.allclose(sep0, omega * truth["time_s"], rtol=1e-9)
    x, y = MAGIC_CAMERA.altaz_to_pixel(truth["alt"], truth["az"])
    assert np.allclose(x, truth["x"], atol=0.01) and np.allclose(y, truth["y"], atol=0.01)
    for k in range(len(truth)):
        cx, cy, _ = _centroid(frames[k])
        assert abs(cx - truth["x"][k]) < 0.1 and abs(cy - truth["y"][k]) < 0.1


def test_flux_per_frame_is_the_light_curve_integral():
    bg = np.full((200, 400), 50.0, np.float32)
    lc = LightCurve.meteor(-1.0, 1.2, flares=[Flare(0.7, 1.5, 0.03)])
    m = Meteor((20, 100), (380, 110), speed=300.0, light_curve=lc, t_start_s=0.1, psf=2.0)
    fps, zp = 30.0, 9.0
    video = MeteorVideo(bg, m, n_frames=40, fps=fps, exposure_s=0.03, zero_point=zp, gain=None)
    frames, truth = video.render(rng=0)
    assert not np.any(truth["saturated"])
    n_checked = 0
    for k in range(len(truth)):
        a = k / fps
        t = np.linspace(a, a + 0.03, 30001)
        expected = integrate.trapezoid(m.rate(t, zp), t)
        assert truth["flux"][k] == pytest.approx(expected, rel=1e-3, abs=1e-6)
        if expected > 50:
            assert (frames[k] - 50.0).sum() == pytest.approx(expected, rel=0.01)
            assert truth["mag"][k] == pytest.approx(zp - 2.5 * np.log10(expected / 0.03), abs=0.01)
            n_checked += 1
    assert n_checked >= 25
    # the flare is there: the frame holding t = 0.8 s is brighter than its neighbours
    k = int(0.8 * fps)
    assert truth["flux"][k] > 1.5 * max(truth["flux"][k - 3], truth["flux"][k + 3])


def test_saturated_frames_are_flagged_exactly():
    bg = np.full((160, 300), 200.0, np.float32)
    lc = LightCurve.meteor(-3.0, 0.8, flares=[Flare(0.3, 2.0, 0.02)])
    m = Meteor((20, 80), (280, 80), speed=330.0, light_curve=lc, psf=2.5)
    sat = 1000.0
    video = MeteorVideo(bg, m, n_frames=20, fps=25.0, zero_point=11.0, gain=None, saturation=sat)
    frames, truth = video.render(rng=0)
    flagged = np.asarray(truth["saturated"])
    assert 0 < flagged.sum() < np.count_nonzero(truth["visible"])
    noise_free_peak = np.asarray(truth["peak"])
    vis = np.asarray(truth["visible"])
    assert np.array_equal(flagged[vis], noise_free_peak[vis] >= sat)
    for k in range(len(truth)):
        mask = truth["mask"][k]
        if flagged[k]:
            assert frames[k][mask].max() == sat
        elif vis[k]:
            assert frames[k][mask].max() < sat
    assert frames.max() <= sat


def test_wake_decays_with_the_requested_time_constant():
    bg = np.zeros((100, 600), np.float32)
    tau, fps = 0.15, 50.0
    m = Meteor(
        (20, 50),
        (580, 50),
        speed=1000.0,
        light_curve=0.0,
        psf=2.0,
        wake_fraction=0.5,
        wake_tau_s=tau,
    )
    video = MeteorVideo(bg, m, n_frames=25, fps=fps, zero_point=10.0, gain=None)
    frames, truth = video.render(rng=0)
    # a patch of the track the head passed in frame 1 (x 40-60), long after it left
    patch = (slice(40, 61), slice(40, 61))
    later = np.arange(4, 25)  # the head's PSF wings have left the patch
    sums = np.array([frames[k][patch].sum() for k in later])
    slope = np.polyfit(later / fps, np.log(sums), 1)[0]
    assert -1 / slope == pytest.approx(tau, rel=0.01)
    # the wake's light: the head's light times wake_fraction, summed over time
    assert np.all(truth["wake_flux"][1:] > 0)


def test_meteor_on_the_real_magic_frame_respects_the_sky(data_dir):
    sb = load_background(data_dir / "magic_allsky" / "20180817_0055.fits")
    # from inside the sky out across the horizon ring
    m = Meteor((30.0, 100.0), (2.0, 160.0), speed=15.0, light_curve=-4.0, camera=MAGIC_CAMERA)
    video = MeteorVideo(sb, m, n_frames=6, fps=10.0, zero_point=10.0, mode="star-free")
    frames, truth = video.render(rng=1)
    assert frames.shape == (6, 1040, 1392)
    assert np.array_equal(
        frames[:, ~sb.sky], np.broadcast_to(sb.image[~sb.sky], (6, (~sb.sky).sum()))
    )
    for k in range(len(truth)):
        assert not np.any(truth["mask"][k] & ~sb.sky)
        if truth["visible"][k]:
            x0, y0, x1, y1 = truth["bbox"][k]
            ys, xs = np.nonzero(truth["mask"][k])
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x1, y1)
    # fresh noise in every frame, at the frame's measured level
    diff = (frames[1] - frames[0])[sb.sky & ~truth["mask"][0] & ~truth["mask"][1]]
    sigma = np.median(sb.noise[sb.sky])
    assert np.std(diff) == pytest.approx(np.sqrt(2) * sigma, rel=0.2)


def test_invalid_parameters_raise_input_error(tmp_path):
    bg = np.zeros((50, 60), np.float32)
    m = Meteor((5, 5), (50, 40), speed=100.0, light_curve=2.0)
    with pytest.raises(InputError, match="fps"):
        MeteorVideo(bg, m, fps=-25.0)
    with pytest.raises(InputError, match="exposure_s"):
        MeteorVideo(bg, m, exposure_s=-0.01)
    with pytest.raises(InputError, match="exposure_s"):
        MeteorVideo(bg, m, fps=25.0, exposure_s=0.1)
    with pytest.raises(InputError, match="n_frames"):
        MeteorVideo(np.zeros((3, 50, 60)), m, n_frames=5)
    with pytest.raises(InputError, match="sky mask shape"):
        MeteorVideo(bg, m, sky=np.ones((10, 10), bool))
    with pytest.raises(InputError, match="noise_sigma"):
        MeteorVideo(bg, m, noise_sigma=np.ones((3, 3)))
    broken = tmp_path / "broken_background.fits"
    broken.write_bytes(b"\x00\x01 not a fits file")
    with pytest.raises(InputError, match="broken_background.fits"):
        MeteorVideo(broken, m)
    with pytest.raises(InputError, match="speed"):
        Meteor((5, 5), (50, 40), speed=0.0, light_curve=2.0)
    with pytest.raises(InputError, match="start and end"):
        Meteor((5, 5), (5, 5), speed=10.0, light_curve=2.0)
    with pytest.raises(InputError, match="wake_tau_s"):
        Meteor((5, 5), (50, 40), speed=10.0, light_curve=2.0, wake_tau_s=-1)
    with pytest.raises(InputError, match="altitude"):
        Meteor((95, 5), (50, 40), speed=10.0, light_curve=2.0, camera=MAGIC_CAMERA)
    with pytest.raises(InputError, match="times_s"):
        LightCurve([0.0, 0.0], [1.0, 2.0])
    with pytest.raises(InputError, match="amplitude_mag"):
        Flare(0.1, -1.0, 0.01)
