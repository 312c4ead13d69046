"""The physics-informed mixture of experts (MoE) for fast movers, in plain PyTorch.

Two detectors of different kinds look at the image together with the
*motion prior* of the observing mode (the PSF convolved with the star motion
over the exposure, :func:`skysift.simulation.movers.motion_prior`):

* expert 1, a YOLOX-style anchor-free head (Ge et al. 2021, arXiv:2107.08430):
  per grid cell an objectness logit and the distances ``(l, t, r, b)`` from
  the cell centre to the box edges;
* expert 2, a CenterNet-style head (Zhou et al. 2019, arXiv:1904.07850): a
  Gaussian centre heatmap, a sub-cell offset and the box size;
* a gating MLP that weighs the two experts per image from their pooled
  features and the prior descriptor.

The prior enters twice: as an input channel (the image correlated with the
prior kernel, i.e. a matched filter for *stars* of this mode, so anything
that does not match stands out), and as a 4-vector (trail length, doubled
angle, PSF width) fed to the backbones (FiLM) and the gate. Both experts run
on light residual backbones built from :mod:`skysift.learning.blocks`, at
stride 4.

Input/output contract
---------------------
``forward(x, prior_vec)``: ``x`` float32 ``(B, 2, H, W)`` with H, W multiples
of 4 (:func:`make_inputs`), ``prior_vec`` float32 ``(B, 4)``
(:func:`prior_descriptor`). Returns a dict of tensors at stride 4
(``h = H / 4``): ``obj1 (B,1,h,w)`` logits, ``box1 (B,4,h,w)`` ``l,t,r,b``
in pixels, ``heat2 (B,1,h,w)`` logits, ``off2 (B,2,h,w)`` cells, ``size2
(B,2,h,w)`` ``w, h`` in pixels, ``gate (B,2)`` softmax weights and
``feat1, feat2 (B,C,h,w)`` (for the cosine-similarity loss). Boxes are
``[x1, y1, x2, y2]`` in 0-based pixels (pixel centres at integers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import signal
from torch import nn

from skysift.learning.blocks import ConvNormAct, ResidualBlock

__all__ = ["STRIDE", "MoverMoE", "decode", "make_inputs", "predict_batch", "prior_descriptor"]

#: Output stride of both experts, pixels per grid cell.
STRIDE = 4


def prior_descriptor(prior: np.ndarray) -> np.ndarray:
    """Moment descriptor of a motion-prior kernel.

    Parameters
    ----------
    prior : ndarray, shape (K, K)
        PSF ⊗ motion kernel (sum 1).

    Returns
    -------
    ndarray of float32, shape (4,)
        ``(L cos 2θ, L sin 2θ, L, σ) / 10`` with ``L`` the trail length and
        ``θ`` its angle (from second moments, as for a segment ⊗ Gaussian)
        and ``σ`` the Gaussian width across the trail, in pixels.
    """
    k = np.asarray(prior, dtype=float)
    k = k / k.sum()
    yy, xx = np.mgrid[: k.shape[0], : k.shape[1]]
    mx, my = (k * xx).sum(), (k * yy).sum()
    cxx = (k * (xx - mx) ** 2).sum()
    cyy = (k * (yy - my) ** 2).sum()
    cxy = (k * (xx - mx) * (yy - my)).sum()
    tr, det = cxx + cyy, cxx * cyy - cxy**2
    disc = np.sqrt(max(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 1e-6)
    length = np.sqrt(12 * max(l1 - l2, 0.0))
    th2 = np.arctan2(2 * cxy, cxx - cyy)
    v = [length * np.cos(th2), length * np.sin(th2), length, np.sqrt(l2)]
    return (np.asarray(v) / 10.0).astype(np.float32)


def _robust(image: np.ndarray) -> tuple[float, float]:
    sub = image[::2, ::2]
    q25, q50, q75 = np.percentile(sub[np.isfinite(sub)], [25, 50, 75])
    return float(q50), float(max(0.7413 * (q75 - q25), 1e-6))


def make_inputs(image: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The two input channels of :class:`MoverMoE` for one image.

    Channel 0 is ``asinh(z / 3)`` of the robust z-score image ``z``;
    channel 1 is ``asinh(m / 3)`` with ``m`` the matched-filter SNR of
    ``z`` for the prior kernel (``z ⋆ K / ‖K‖₂``).

    Parameters
    ----------
    image : ndarray, shape (H, W)
    prior : ndarray, shape (K, K)

    Returns
    -------
    ndarray of float32, shape (2, H, W)
    """
    img = np.nan_to_num(np.asarray(image, dtype=np.float32))
    med, sig = _robust(img)
    z = (img - med) / sig
    k = np.asarray(prior, dtype=np.float32)
    k = k / np.sqrt((k * k).sum())
    m = signal.fftconvolve(z, k[::-1, ::-1], mode="same")
    return np.stack([np.arcsinh(z / 3.0), np.arcsinh(m / 3.0)]).astype(np.float32)


class _Backbone(nn.Module):
    """Light residual backbone to stride 4 with FiLM conditioning on the prior."""

    def __init__(self, width: int, dilations: tuple[int, ...], n_prior: int = 4) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            ConvNormAct(2, w // 2, 3), ConvNormAct(w // 2, w, 3, stride=2), ResidualBlock(w, w)
        )
        self.down = ConvNormAct(w, 2 * w, 3, stride=2)
        self.film = nn.Linear(n_prior, 4 * w)
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(2 * w, 2 * w, 3, padding=d, dilation=d, bias=False),
                    nn.BatchNorm2d(2 * w),
                    nn.SiLU(),
                )
                for d in dilations
            ]
        )
        self.out_channels = 2 * w

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        f = self.down(self.stem(x))
        gamma, beta = self.film(p).chunk(2, dim=1)
        f = f * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        for blk in self.blocks:
            f = f + blk(f)
        return f


class MoverMoE(nn.Module):
    """Physics-informed mixture of a YOLOX-style and a CenterNet-style detector.

    Parameters
    ----------
    width : int, optional
        Base channels of each backbone. Default 16.
    feat_channels : int, optional
        Channels of the projected expert features compared by the
        cosine-similarity loss. Default 32.

    Notes
    -----
    See the module docstring for the input/output contract. ``predict``
    decodes boxes with :func:`decode`.
    """

    name = "mover_moe"

    def __init__(self, *, width: int = 16, feat_channels: int = 32) -> None:
        super().__init__()
        self._config = {"width": int(width), "feat_channels": int(feat_channels)}
        # expert 1: plain dilated stack (Darknet-like); expert 2: wider dilations (ResNet-like)
        self.bb1 = _Backbone(width, (1, 2, 4, 1))
        self.bb2 = _Backbone(width, (2, 4, 8, 2))
        c = self.bb1.out_channels
        self.proj1 = nn.Conv2d(c, feat_channels, 1)
        self.proj2 = nn.Conv2d(c, feat_channels, 1)
        self.head1 = nn.Sequential(
            ConvNormAct(feat_channels, feat_channels, 3), nn.Conv2d(feat_channels, 5, 1)
        )
        self.head2 = nn.Sequential(
            ConvNormAct(feat_channels, feat_channels, 3), nn.Conv2d(feat_channels, 5, 1)
        )
        self.gate = nn.Sequential(nn.Linear(2 * feat_channels + 4, 32), nn.SiLU(), nn.Linear(32, 2))
        nn.init.constant_(self.head1[1].bias[:1], -4.0)
        nn.init.constant_(self.head2[1].bias[:1], -4.0)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return dict(self._config)

    def forward(self, x: torch.Tensor, prior_vec: torch.Tensor) -> dict[str, torch.Tensor]:
        f1 = torch.nn.functional.silu(self.proj1(self.bb1(x, prior_vec)))
        f2 = torch.nn.functional.silu(self.proj2(self.bb2(x, prior_vec)))
        o1 = self.head1(f1)
        o2 = self.head2(f2)
        g_in = torch.cat([f1.mean(dim=(2, 3)), f2.mean(dim=(2, 3)), prior_vec], dim=1)
        gate = torch.softmax(self.gate(g_in), dim=1)
        return {
            "obj1": o1[:, :1],
            "box1": STRIDE * torch.exp(o1[:, 1:5].clamp(-6, 4)),
            "heat2": o2[:, :1],
            "off2": torch.sigmoid(o2[:, 1:3]),
            "size2": STRIDE * torch.exp(o2[:, 3:5].clamp(-6, 4)),
            "gate": gate,
            "feat1": f1,
            "feat2": f2,
        }

    @torch.inference_mode()
    def predict(
        self, image: np.ndarray, prior: np.ndarray, *, expert: str = "moe",
        threshold: float = 0.3, max_det: int = 20, tta: bool = False,
    ) -> np.ndarray:  # fmt: skip
        """Detect movers in one image.

        Parameters
        ----------
        image : ndarray, shape (H, W)
        prior : ndarray, shape (K, K)
            Motion prior kernel of the frame.
        expert : {"moe", "yolox", "centernet"}, optional
        threshold : float, optional
            Score threshold in [0, 1]. Default 0.3.
        max_det : int, optional
        tta : bool, optional
            Test-time augmentation over the 8 rotations/flips (:func:`predict_batch`).

        Returns
        -------
        ndarray, shape (N, 5)
            ``[x1, y1, x2, y2, score]`` rows, pixels.
        """
        self.eval()
        h, w = np.shape(image)
        ph, pw = (-h) % STRIDE, (-w) % STRIDE
        x = make_inputs(image, prior)
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect")
        pv = prior_descriptor(prior)[None]
        return predict_batch(self, x[None], pv, expert=expert, threshold=threshold,
                             max_det=max_det, tta=tta)[0]  # fmt: skip


def _dihedral(x: np.ndarray, pv: np.ndarray, k: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (B, C, H, W) inputs by k×90° (np.rot90 sense) then flip x; transform descriptors."""
    pv = pv.copy()
    x = np.rot90(x, k, axes=(2, 3))
    if k % 2:
        pv[:, 0], pv[:, 1] = -pv[:, 0], -pv[:, 1]
    if flip:
        x = x[:, :, :, ::-1]
        pv[:, 1] = -pv[:, 1]
    return np.ascontiguousarray(x), pv


def _undo_boxes(b: np.ndarray, shape: tuple[int, int], k: int, flip: bool) -> np.ndarray:
    """Map [x1, y1, x2, y2] boxes from a transformed frame back to the original (H, W)."""
    h, w = shape
    widths = []  # width before each rotation step
    cw, ch = w, h
    for _ in range(k % 4):
        widths.append(cw)
        cw, ch = ch, cw
    xs = np.stack([b[:, 0], b[:, 2], b[:, 0], b[:, 2]], 1)
    ys = np.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3]], 1)
    if flip:
        xs = (cw - 1) - xs
    for wb in reversed(widths):  # inverse of (x, y) -> (y, wb - 1 - x)
        xs, ys = (wb - 1) - ys, xs
    return np.column_stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)])


def predict_batch(
    model: MoverMoE, x: np.ndarray, pv: np.ndarray, *, expert: str = "moe",
    threshold: float = 0.3, max_det: int = 20, tta: bool = False,
) -> list[np.ndarray]:  # fmt: skip
    """Boxes for a batch of prepared inputs, optionally with 8-fold test-time augmentation.

    With ``tta``, the 8 rotations/flips are run, boxes mapped back and fused:
    boxes overlapping by IoU ≥ 0.55 form a cluster whose score is the sum of
    its scores / 8 and whose box is the score-weighted mean (weighted box fusion).

    Parameters
    ----------
    model : MoverMoE
    x : ndarray, shape (B, 2, H, W)
        :func:`make_inputs` stacks (H, W multiples of 4).
    pv : ndarray, shape (B, 4)
        :func:`prior_descriptor` rows.

    Returns
    -------
    list of ndarray, shape (N, 5)
    """
    model.eval()
    shape = x.shape[2:]
    with torch.inference_mode():
        if not tta:
            out = model(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(pv))
            return decode(out, expert=expert, threshold=threshold, max_det=max_det)
        runs: list[list[np.ndarray]] = []
        for k in range(4):
            for flip in (False, True):
                xa, pa = _dihedral(x, pv, k, flip)
                out = model(torch.from_numpy(xa), torch.from_numpy(pa.astype(np.float32)))
                dec = decode(out, expert=expert, threshold=0.05, max_det=4 * max_det)
                runs.append([np.column_stack([_undo_boxes(d[:, :4], shape, k, flip), d[:, 4]])
                             for d in dec])  # fmt: skip
    res = []
    for i in range(x.shape[0]):
        allb = np.concatenate([r[i] for r in runs]) if runs else np.zeros((0, 5))
        allb = allb[np.argsort(-allb[:, 4])]
        used = np.zeros(len(allb), bool)
        fused = []
        for j in range(len(allb)):
            if used[j]:
                continue
            ious = np.array(
                [_iou(allb[j], allb[m]) if not used[m] else -1 for m in range(len(allb))]
            )
            members = np.nonzero(ious >= 0.55)[0]
            used[members] = True
            wts = allb[members, 4]
            box = (allb[members, :4] * wts[:, None]).sum(0) / wts.sum()
            fused.append([*box, wts.sum() / 8.0])
        f = np.array(fused).reshape(-1, 5)
        f = f[f[:, 4] >= threshold]
        res.append(f[np.argsort(-f[:, 4])][:max_det])
    return res


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (gx.float() + 0.5) * STRIDE - 0.5, (gy.float() + 0.5) * STRIDE - 0.5


def expert_maps(
    out: dict[str, torch.Tensor], expert: str = "moe"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell score ``(B, h, w)`` and box ``(B, 4, h, w)`` of one expert or of the mixture.

    Raises
    ------
    KeyError
        For an unknown expert name (the message lists them).
    """
    b, _, h, w = out["obj1"].shape
    cx, cy = _grid(h, w)
    cx, cy = cx.to(out["obj1"].device), cy.to(out["obj1"].device)
    left, top, right, bottom = out["box1"].unbind(1)
    box1 = torch.stack([cx - left, cy - top, cx + right, cy + bottom], 1)
    s1 = torch.sigmoid(out["obj1"][:, 0])
    ox, oy = out["off2"].unbind(1)
    ccx = cx + (ox - 0.5) * STRIDE
    ccy = cy + (oy - 0.5) * STRIDE
    sw, sh = out["size2"].unbind(1)
    box2 = torch.stack([ccx - sw / 2, ccy - sh / 2, ccx + sw / 2, ccy + sh / 2], 1)
    s2 = torch.sigmoid(out["heat2"][:, 0])
    if expert == "yolox":
        return s1, box1
    if expert == "centernet":
        return s2, box2
    if expert != "moe":
        msg = f"expert must be one of ['moe', 'yolox', 'centernet'], got {expert!r}"
        raise KeyError(msg)
    g = out["gate"][:, :, None, None]
    s = g[:, 0] * s1 + g[:, 1] * s2
    wsum = (g[:, 0] * s1 + g[:, 1] * s2).clamp_min(1e-6)
    box = (g[:, 0:1] * s1[:, None] * box1 + g[:, 1:2] * s2[:, None] * box2) / wsum[:, None]
    return s, box


def decode(
    out: dict[str, torch.Tensor], *, expert: str = "moe", threshold: float = 0.3, max_det: int = 20
) -> list[np.ndarray]:
    """Boxes from the output maps: 3×3 peak picking on the score, then box NMS (IoU 0.3).

    Returns
    -------
    list of ndarray, shape (N, 5)
        Per image, ``[x1, y1, x2, y2, score]`` sorted by score.
    """
    s, box = expert_maps(out, expert)
    peak = s == torch.nn.functional.max_pool2d(s[:, None], 3, 1, 1)[:, 0]
    res = []
    for i in range(s.shape[0]):
        m = peak[i] & (s[i] >= threshold)
        sc = s[i][m]
        bx = box[i].permute(1, 2, 0)[m]
        order = torch.argsort(sc, descending=True)[: 4 * max_det]
        sc, bx = sc[order].numpy(), bx[order].numpy()
        keep: list[int] = []
        for j in range(len(sc)):
            if all(_iou(bx[j], bx[k]) < 0.3 for k in keep):
                keep.append(j)
            if len(keep) >= max_det:
                break
        res.append(np.column_stack([bx[keep], sc[keep]]) if keep else np.zeros((0, 5)))
    return res


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0
