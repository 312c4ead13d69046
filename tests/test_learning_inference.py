"""Tiled inference, normalisation, NaN handling, ONNX Runtime backend, reduced precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.errors import InputError
from skysift.learning import (
    Normalisation,
    Predictor,
    build_model,
    export_onnx,
    onnx_session,
    predict_image,
    save_weights,
    to_precision,
)
from skysift.learning.inference import taper_window


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path, torch_one_thread):
    """One torch thread (see conftest) and a private ONNX cache."""
    monkeypatch.setenv("SKYSIFT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    model = build_model("unet", depth=2, width=4)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model(torch.randn(4, 1, 32, 32) * 2 + 1)
    return model.eval()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).normal(10.0, 2.0, (150, 170)).astype(np.float32)


def test_taper_windows_sum_to_one():
    tile, stride, margin = 64, 40, 6
    w = taper_window(tile, stride, margin)
    assert w[:margin].max() == 0 and w[-margin:].max() == 0
    total = np.zeros(stride * 5 + tile)
    for k in range(6):
        total[k * stride : k * stride + tile] += w
    np.testing.assert_allclose(total[tile - stride : -(tile - stride)], 1.0, atol=1e-12)
    with pytest.raises(InputError, match="margin"):
        taper_window(64, 40, 13)


def test_tiled_equals_whole_image(unet, image):
    whole = predict_image(unet, image, mode="whole", backend="torch")
    # receptive-field-aware margin (radius of a depth-2 U-Net ~ 23 px): exact up to rounding
    tiled = predict_image(unet, image, tile=96, stride=48, margin=24, batch_size=3, backend="torch")
    assert tiled.shape == whole.shape == image.shape
    inner = (slice(32, -32), slice(32, -32))  # away from the image border (padding differs there)
    np.testing.assert_allclose(tiled[inner], whole[inner], atol=1e-5)
    # default margin ((tile - stride) // 4 = 8 px, not receptive-field aware): still within 1e-4
    seams = predict_image(unet, image, tile=64, stride=32, backend="torch")
    np.testing.assert_allclose(seams[inner], whole[inner], atol=1e-4)
    # default settings (tile 256 > image): one padded tile, still equal inside
    one = predict_image(unet, image, backend="torch")
    np.testing.assert_allclose(one[inner], whole[inner], atol=1e-5)


def test_image_smaller_than_tile_and_bad_inputs(unet):
    small = np.random.default_rng(2).normal(size=(7, 11)).astype(np.float32)
    prob = predict_image(unet, small, tile=32, stride=16, backend="torch")
    assert prob.shape == (7, 11)
    assert np.all((prob > 0) & (prob < 1))
    with pytest.raises(InputError, match=r"\(H, W\)"):
        predict_image(unet, np.zeros((2, 3, 4, 5)), backend="torch")
    with pytest.raises(InputError, match="multiple of the net's size_multiple"):
        predict_image(unet, small, tile=30, stride=10, backend="torch")
    with pytest.raises(InputError, match="backend"):
        predict_image(unet, small, backend="tensorrt")
    with pytest.raises(InputError, match="mode"):
        predict_image(unet, small, mode="strips", backend="torch")


def test_nan_pixels_get_zero_and_do_not_spread(unet, image):
    clean = predict_image(unet, image, tile=64, stride=32, margin=8, backend="torch")
    holed = image.copy()
    holed[70:73, 80:82] = np.nan
    holed[0, 0] = np.inf
    prob = predict_image(unet, holed, tile=64, stride=32, margin=8, backend="torch")
    assert np.isfinite(prob).all()
    assert np.all(prob[70:73, 80:82] == 0) and prob[0, 0] == 0
    # beyond the receptive field of the hole, nothing changed
    far = np.ones(image.shape, bool)
    far[40:105, 50:115] = False
    far[:30, :30] = False
    np.testing.assert_allclose(prob[far], clean[far], atol=1e-6)
    with pytest.raises(InputError, match="no finite pixel"):
        predict_image(unet, np.full((8, 8), np.nan), backend="torch")


def test_onnxruntime_matches_torch(unet, image, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the learn extra)")
    t = predict_image(unet, image, tile=64, stride=32, backend="torch")
    o = predict_image(unet, image, tile=64, stride=32, backend="onnxruntime")
    np.testing.assert_allclose(o, t, atol=1e-4)
    assert any((tmp_path / "cache" / "onnx").glob("unet-*.onnx"))  # built at first use, cached
    # an explicit file and session, odd batch and sizes
    data = export_onnx(unet, tmp_path / "unet.onnx")
    assert (tmp_path / "unet.onnx").read_bytes() == data
    session = onnx_session(tmp_path / "unet.onnx", num_threads=1)
    x = torch.randn(3, 1, 36, 52)
    ref = unet.predict(x).numpy()
    got = predict_image(session, x[1, 0].numpy(), mode="whole")
    np.testing.assert_allclose(got, ref[1, 0], atol=1e-4)
    # the classifier keeps its fixed size with a dynamic batch
    clf = build_model("streak_classifier").eval()
    sess = onnx_session(export_onnx(clf), num_threads=1)
    cut = torch.rand(5, 1, 128, 128)
    np.testing.assert_allclose(
        sess.run(None, {"image": cut.numpy()})[0], clf(cut).detach().numpy(), atol=1e-4
    )
    with pytest.raises(InputError, match="does not exist"):
        onnx_session(tmp_path / "none.onnx")


def test_bfloat16_copy_is_close(unet, image):
    bf = to_precision(unet, "bfloat16")
    assert next(bf.parameters()).dtype == torch.bfloat16
    assert next(unet.parameters()).dtype == torch.float32  # original untouched
    p32 = predict_image(unet, image, tile=64, stride=32, backend="torch")
    p16 = predict_image(bf, image, tile=64, stride=32)  # auto -> torch for reduced precision
    assert p16.dtype == np.float32
    assert np.abs(p16 - p32).max() < 0.05
    with pytest.raises(InputError, match="valid"):
        to_precision(unet, "int4")


def test_normalisations():
    rng = np.random.default_rng(3)
    img = rng.normal(100.0, 5.0, (200, 200)).astype(np.float32)
    z = Normalisation("median_mad")(img)
    assert abs(np.median(z)) < 0.02 and abs(np.std(z) - 1) < 0.05
    a = Normalisation("arcsinh")(img)
    np.testing.assert_allclose(a, np.arcsinh(z), atol=1e-5)  # eq. 1 with robust mu, sigma
    img[5, 5] = 1e6  # a saturated star barely moves the robust statistics
    assert abs(np.median(Normalisation("arcsinh")(img))) < 0.02
    assert Normalisation.from_spec({"name": "zscore"}).name == "zscore"
    with pytest.raises(InputError, match="valid names"):
        Normalisation("log")


def test_predictor_uses_stored_normalisation(unet, image, tmp_path):
    save_weights(unet, tmp_path / "w.safetensors", {"normalisation": {"name": "arcsinh"}})
    pred = Predictor.from_weights(tmp_path / "w.safetensors", backend="torch", tile=64, stride=32)
    assert pred.backend == "torch"
    expected = predict_image(unet, image, tile=64, stride=32, backend="torch", normalise="arcsinh")
    np.testing.assert_allclose(pred(image), expected, atol=1e-6)
    assert pred.mask(image).dtype == bool
    # 'auto' picks onnxruntime when installed
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the learn extra)")
    assert Predictor(unet, tile=64, stride=32).backend == "onnxruntime"
