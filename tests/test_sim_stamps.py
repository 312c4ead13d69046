"""Postage stamps: size distribution, dithers as channels, classes."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InputError
from skysift.simulation.stamps import STAMP_KINDS, make_stamp


def test_stamp_size_is_extent_plus_n65_5():
    rng = np.random.default_rng(0)
    pads = []
    for _ in range(300):
        stamp, truth = make_stamp("star", rng, flux_range=(1e3, 1e3))
        assert stamp.shape[0] == stamp.shape[1]
        pads.append(stamp.shape[0] - truth.meta["extent"])
    assert np.mean(pads) == pytest.approx(65.0, abs=0.8)
    assert np.std(pads) == pytest.approx(5.0, abs=0.6)
    # SSO: the side grows with the trail extent
    stamp, truth = make_stamp("sso", 1, sso_length_range=(40.0, 40.0))
    r = truth[0]
    assert truth.meta["extent"] == pytest.approx(
        max(abs(r["x2"] - r["x1"]), abs(r["y2"] - r["y1"]))
    )
    assert stamp.shape[0] == pytest.approx(truth.meta["extent"] + truth.meta["padding"])


@pytest.mark.parametrize("kind", STAMP_KINDS)
def test_dithers_are_channels_offset_as_given(kind):
    offs = [[0.0, 0.0], [6.0, -4.0], [-5.0, 3.0]]
    stamp, truth = make_stamp(
        kind,
        2,
        n_dithers=3,
        dither_offsets=offs,
        background=0.0,
        read_noise=0.0,
        flux_range=(2e5, 2e5),
    )
    assert stamp.ndim == 3 and stamp.shape[0] == 3
    assert list(truth["frame"]) == [0, 1, 2]
    if kind == "sso":  # moves along its trail between dithers as well
        dt = 1.2
        step = np.array([truth["x2"][0] - truth["x1"][0], truth["y2"][0] - truth["y1"][0]]) * dt
    else:
        step = np.zeros(2)
    yy, xx = np.indices(stamp.shape[1:])
    cen = [((s * xx).sum() / s.sum(), (s * yy).sum() / s.sum()) for s in stamp.astype(float)]
    for c in (1, 2):
        want = np.array(offs[c]) + c * step
        assert truth["x"][c] - truth["x"][0] == pytest.approx(want[0], abs=1e-6)
        assert truth["y"][c] - truth["y"][0] == pytest.approx(want[1], abs=1e-6)
        # the light itself moved as given (Poisson noise only: 2e5 e-)
        assert cen[c][0] - cen[0][0] == pytest.approx(want[0], abs=0.15)
        assert cen[c][1] - cen[0][1] == pytest.approx(want[1], abs=0.15)


def test_single_exposure_stamp_and_truth():
    stamp, truth = make_stamp("galaxy", 3, background=50.0, read_noise=4.0)
    assert stamp.ndim == 2 and stamp.dtype == np.float32
    assert len(truth) == 1 and truth["type"][0] == "galaxy"
    assert abs(np.median(stamp) - 50.0) < 3.0  # sky level in electrons
    assert truth["snr_avg"][0] > 0


def test_invalid_stamp_parameters():
    with pytest.raises(InputError, match=r"\['sso', 'cosmic_ray', 'galaxy', 'star'\]"):
        make_stamp("asteroid")
    with pytest.raises(InputError, match="dither_offsets"):
        make_stamp("star", n_dithers=3, dither_offsets=[[0, 0]])
    with pytest.raises(InputError, match="n_dithers"):
        make_stamp("star", n_dithers=0)
    with pytest.raises(InputError, match="background"):
        make_stamp("star", background=-1.0)
