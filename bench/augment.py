"""Batched random augmentation on the training device (no PIL, no per-sample Python loop).

Encoders get raw ``uint8 [B, C, H, W]`` batches (see :class:`bench.data.Batch`) and call a
:class:`BatchAugment` on them. Every random parameter of every sample is drawn in one call
on the CPU from an optional ``torch.Generator`` and then moved to the images' device, so a
fixed seed gives the same views on CPU and CUDA, and no op needs a device sync to decide
what to do (masks and kernel choices are known on the host).

The pipelines follow torchvision's ``RandomResizedCrop -> RandomHorizontalFlip ->
RandomApply(ColorJitter) -> RandomGrayscale -> GaussianBlur -> RandomSolarize`` (same
parameter distributions and formulas) with two deviations, made to keep the batch vectorised:

- the crop box is continuous (sub-pixel) and resampled by one bilinear ``grid_sample``
  without antialiasing, not an integer box resized with antialias: keep stored images near
  the training size (downscaling a large crop would alias);
- colour jitter applies brightness, contrast, saturation, hue in that fixed order
  (torchvision draws a random order per call).

Hue is torchvision's exact HSV hue shift (per sample); a YIQ chroma rotation (one 3x3
matrix per sample) is a little cheaper but can miss the HSV hue angle by ~40 % (seen on an
orange at h = 0.1) and changes HSV saturation, so it is not used.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

# ITU-R 601 luma, with torchvision's rgb_to_grayscale rounding.
_LUMA = (0.2989, 0.587, 0.114)
# HSV -> RGB hexcone ramps per channel: clamp(sign * |h - centre| + offset, 0, 1).
_RAMP = torch.tensor([[3.0, 2.0, 4.0], [1.0, -1.0, -1.0], [-1.0, 2.0, 2.0]]).view(3, 1, 3, 1, 1)
_CROP_TRIES = 10  # torchvision's RandomResizedCrop rejection-sampling budget

# Columns of the per-sample uniform draws (after the 2 * _CROP_TRIES crop columns).
_CX, _CY, _FLIP, _JIT, _BRI, _CON, _SAT, _HUE, _GRAY, _BLUR, _SIGMA, _SOL = range(12)
_N_DRAWS = 2 * _CROP_TRIES + 12


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of one augmentation pipeline (torchvision's names and semantics).

    ``jitter`` is (brightness, contrast, saturation, hue) as in ``ColorJitter``: factors
    are drawn from ``[max(0, 1 - v), 1 + v]`` and the hue shift from ``[-h, h]``.
    ``crop_scale=(1, 1)`` with ``crop_ratio=(1, 1)`` means no crop: the whole image,
    resized to ``size`` (torchvision would centre-crop a non-square image to a square).
    """

    size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"bad crop_ratio {self.crop_ratio}")
        if not 0 <= self.jitter[3] <= 0.5:
            raise ValueError(f"hue jitter must be in [0, 0.5], got {self.jitter[3]}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"bad blur_sigma {self.blur_sigma}")

    @property
    def crops(self) -> bool:
        return not (self.crop_scale == (1.0, 1.0) and self.crop_ratio == (1.0, 1.0))

    @property
    def blur_kernel(self) -> int:
        """Odd kernel about 10 % of the image side, as SimCLR/BYOL/MoCo v2 use."""
        return max(3, int(0.1 * self.size) // 2 * 2 + 1)

    # --- presets -------------------------------------------------------------------------

    @classmethod
    def simclr(cls, size: int) -> AugmentConfig:
        """SimCLR. Small images: MUC's CIFAR recipe (crop 0.1-1, jitter 0.4/0.4/0.4/0.1 p 0.8,
        grey 0.2, no blur). From 64 px: the ImageNet recipe (crop 0.08-1, colour strength 1,
        i.e. jitter 0.8/0.8/0.8/0.2, blur p 0.5)."""
        if size >= 64:
            return cls(size, jitter=(0.8, 0.8, 0.8, 0.2), blur_p=0.5)
        return cls(size, crop_scale=(0.1, 1.0) if size <= 32 else (0.08, 1.0))

    @classmethod
    def moco(cls, size: int) -> AugmentConfig:
        """MoCo v2. Small images: same MUC recipe as :meth:`simclr`; from 64 px: crop 0.2-1,
        jitter 0.4/0.4/0.4/0.1 p 0.8, grey 0.2, blur p 0.5."""
        if size >= 64:
            return cls(size, crop_scale=(0.2, 1.0), blur_p=0.5)
        return cls.simclr(size)

    @classmethod
    def byol(cls, size: int) -> AugmentConfig:
        """BYOL, both views from one distribution: jitter 0.4/0.4/0.2/0.1 p 0.8, grey 0.2.
        BYOL blurs view 1 always and view 2 with p 0.1, and solarises view 2 only (p 0.2);
        here blur p 0.5 and solarize p 0.2 for both views from 64 px, and neither on small
        images (as the CIFAR ports of BYOL in solo-learn and lightly drop them)."""
        big = size >= 64
        return cls(
            size,
            jitter=(0.4, 0.4, 0.2, 0.1),
            blur_p=0.5 if big else 0.0,
            solarize_p=0.2 if big else 0.0,
        )

    @classmethod
    def supervised(cls, size: int) -> AugmentConfig:
        """Standard supervised training: a mild resized crop (scale 0.64-1) and flip only."""
        return cls(size, crop_scale=(0.64, 1.0), jitter_p=0.0, gray_p=0.0)

    @classmethod
    def none(cls, size: int) -> AugmentConfig:
        """Identity (up to resizing to ``size``): for evaluation-time views."""
        return cls(
            size,
            crop_scale=(1.0, 1.0),
            crop_ratio=(1.0, 1.0),
            flip_p=0.0,
            jitter_p=0.0,
            gray_p=0.0,
        )

    @classmethod
    def preset(cls, name: str, size: int, **overrides: object) -> AugmentConfig:
        """``preset("simclr", 32, blur_p=0.5)``: a named preset with fields replaced."""
        makers = {
            "simclr": cls.simclr,
            "moco": cls.moco,
            "byol": cls.byol,
            "supervised": cls.supervised,
            "none": cls.none,
        }
        if name not in makers:
            raise KeyError(f"unknown augmentation preset {name!r}; known: {sorted(makers)}")
        return replace(makers[name](size), **overrides)


class BatchAugment(torch.nn.Module):
    """Random views of a uint8 batch, normalised, as float32 ``channels_last`` tensors.

    ``forward(x, generator)`` draws an independent view per sample; ``prepare(x)`` is the
    deterministic path (resize if needed + normalise) for evaluation. Per-sample parameters
    are computed on the host and sent to the device in one transfer; ops a sample does not
    get use identity parameters (jitter) or run on the selected rows only (grey, blur,
    solarize), and are skipped when no sample needs them.
    """

    def __init__(self, cfg: AugmentConfig, mean: list[float], std: list[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError("mean and std need one entry per channel")
        self.cfg = cfg
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def extra_repr(self) -> str:
        return repr(self.cfg)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``uint8 [B, C, H, W]`` (or float in [0, 1]) -> normalised ``float [B, C, size, size]``.

        All random numbers come from ``generator`` (use a CPU one; draws are made on its device
        and moved to ``x``'s): a fixed count per sample whatever the config, so changing one
        probability leaves every other parameter of the stream unchanged.
        """
        cfg, dev = self.cfg, x.device
        n, c, h, w = x.shape
        gen_dev = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(n, _N_DRAWS, generator=generator, device=gen_dev).cpu().double()
        crop, p = u[:, : 2 * _CROP_TRIES], u[:, 2 * _CROP_TRIES :]
        flip = p[:, _FLIP] < cfg.flip_p
        jit = (p[:, _JIT] < cfg.jitter_p) & any(v > 0 for v in cfg.jitter)

        host: dict[str, torch.Tensor] = {}
        if cfg.crops or flip.any():  # else the same (exact) resize as prepare()
            host["gx"], host["gy"] = self._crop_grid(crop, p[:, _CX], p[:, _CY], flip, h, w)
        if jit.any():
            host.update(self._jitter_params(p, jit, c))
        par = _to_device(host, dev)

        x = _to_float(x)
        if "gx" in par:
            s = cfg.size
            grid = torch.stack(
                (par["gx"][:, None, :].expand(n, s, s), par["gy"][:, :, None].expand(n, s, s)), -1
            )
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        else:
            x = self._resize(x)
        if jit.any():
            x = self._jitter(x, par)
        if c == 3:
            luma = _const("luma", dev)
            x = _on_rows(x, p[:, _GRAY] < cfg.gray_p, lambda v: _luma(v, luma).expand_as(v))
        if cfg.blur_p > 0:
            sigma = cfg.blur_sigma[0] + (cfg.blur_sigma[1] - cfg.blur_sigma[0]) * p[:, _SIGMA]
            blur = p[:, _BLUR] < cfg.blur_p
            x = _on_rows(x, blur, lambda v: _gauss_blur(v, sigma[blur], cfg.blur_kernel))
        x = _on_rows(x, p[:, _SOL] < cfg.solarize_p, lambda v: torch.where(v >= 0.5, 1 - v, v))
        return self._normalise(x)

    @torch.no_grad()
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic: resize to ``size`` if needed (bilinear, antialiased) and normalise."""
        return self._normalise(self._resize(_to_float(x)))

    # --- pieces -----------------------------------------------------------------------------

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        s = self.cfg.size
        if x.shape[-2:] == (s, s):
            return x
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x.clamp_(0, 1)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std in place, then channels_last (cheaper than writing into a
        channels_last output directly)."""
        if self.mean.shape[1] != x.shape[1]:
            raise ValueError(
                f"{self.mean.shape[1]}-channel mean/std for {x.shape[1]}-channel input"
            )
        if x.device not in self._stats:  # copied once per device
            self._stats[x.device] = (self.mean.to(x.device), (1 / self.std).to(x.device))
        mean, inv_std = self._stats[x.device]
        return x.sub_(mean).mul_(inv_std).contiguous(memory_format=torch.channels_last)

    def _crop_grid(
        self,
        u: torch.Tensor,
        ucx: torch.Tensor,
        ucy: torch.Tensor,
        flip: torch.Tensor,
        h: int,
        w: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RandomResizedCrop (+ flip) as per-sample sampling coordinates for ``grid_sample``.

        As torchvision: area fraction ~ U(crop_scale), aspect ratio log-uniform in crop_ratio,
        the first of 10 tries whose box fits the image wins, else a centre crop with the ratio
        clamped into range; the box position is uniform over those inside the image. The box
        is continuous (sub-pixel). The map is axis-aligned, so the ``[B, S, S, 2]`` grid is
        the outer product of an x row ``[B, S]`` and a y column ``[B, S]`` (flip = negative x
        scale), which is far cheaper than ``affine_grid``.
        """
        cfg, t = self.cfg, _CROP_TRIES
        lo, hi = cfg.crop_scale
        lr0, lr1 = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
        area = lo + (hi - lo) * u[:, :t]
        ratio = torch.exp(lr0 + (lr1 - lr0) * u[:, t:])  # width / height of the box
        fw = torch.sqrt(area * ratio * h / w)  # box sides as fractions of the image sides
        fh = torch.sqrt(area / ratio * w / h)
        ok = (fw <= 1 + 1e-9) & (fh <= 1 + 1e-9)
        found = ok.any(1)
        pick = ok.double().argmax(1, keepdim=True)  # first fitting try (argmax takes the first)
        img_ratio, (r0, r1) = w / h, cfg.crop_ratio
        fb = (1.0, img_ratio / r0) if img_ratio < r0 else (r1 / img_ratio, 1.0)
        fb = fb if not r0 <= img_ratio <= r1 else (1.0, 1.0)
        if not cfg.crops:  # whole image (only reached when some sample flips)
            found, fb = torch.zeros_like(found), (1.0, 1.0)
        sw = torch.where(found, fw.gather(1, pick)[:, 0], fb[0]).clamp(max=1.0)
        sh = torch.where(found, fh.gather(1, pick)[:, 0], fb[1]).clamp(max=1.0)
        cx = torch.where(found, (2 * ucx - 1) * (1 - sw), 0.0)
        cy = torch.where(found, (2 * ucy - 1) * (1 - sh), 0.0)
        s = cfg.size  # output pixel centres in normalised coords (align_corners=False)
        lin = (2 * torch.arange(s, dtype=torch.float64) + 1) / s - 1
        gx = cx[:, None] + torch.where(flip, -sw, sw)[:, None] * lin
        gy = cy[:, None] + sh[:, None] * lin
        return gx, gy

    def _jitter_params(self, p: torch.Tensor, on: torch.Tensor, c: int) -> dict[str, torch.Tensor]:
        """ColorJitter factors; samples not in ``on`` get identity ones (a no-op: exact for
        brightness, contrast, saturation; up to float rounding for hue)."""
        bri, con, sat, hue = self.cfg.jitter

        def factor(col: int, v: float) -> torch.Tensor:
            lo = max(0.0, 1 - v)
            return torch.where(on, lo + (1 + v - lo) * p[:, col], 1.0)

        out: dict[str, torch.Tensor] = {}
        if bri > 0:
            out["bri"] = factor(_BRI, bri)
        if con > 0:
            out["con"] = factor(_CON, con)
        if c != 3:
            return out
        luma = torch.tensor(_LUMA, dtype=torch.float64)
        eye = torch.eye(3, dtype=torch.float64)
        if sat > 0:  # blend with the pixel's luma as a matrix: s * I + (1 - s) * 1 luma^T
            f = factor(_SAT, sat)[:, None, None]
            out["sat"] = f * eye + (1 - f) * luma.expand(3, 3)
        if hue > 0:  # shift in turns of the hue circle, ~ U(-hue, hue)
            out["hue"] = torch.where(on, (2 * p[:, _HUE] - 1) * hue, 0.0)
        return out

    @staticmethod
    def _jitter(x: torch.Tensor, par: dict[str, torch.Tensor]) -> torch.Tensor:
        """Brightness, contrast, saturation, hue (fixed order), clamping after each as
        torchvision does; contrast blends with the image's mean luma."""
        n, c = x.shape[:2]
        if "bri" in par:
            x = x.mul_(par["bri"].view(n, 1, 1, 1)).clamp_(0, 1)
        if "con" in par:
            f = par["con"].view(n, 1, 1, 1)
            chan = x.mean((2, 3))
            m = chan @ _const("luma", x.device) if c == 3 else chan[:, 0]
            x = x.mul_(f).add_(m.view(n, 1, 1, 1) * (1 - f)).clamp_(0, 1)  # addcmul is slower
        if "sat" in par:
            x = torch.bmm(par["sat"], x.flatten(2)).view_as(x).clamp_(0, 1)
        if "hue" in par:
            x = _hue_shift(x, par["hue"].view(n, 1, 1, 1))
        return x


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """A fresh float32 copy in [0, 1] (later ops work in place)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    return x.to(torch.float32, copy=True)


def _to_device(host: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move per-sample float64 host tensors to ``device`` as float32 in a single copy."""
    if not host:
        return {}
    n = next(iter(host.values())).shape[0]
    flat = _h2d(torch.cat([v.reshape(n, -1) for v in host.values()], 1).float(), device)
    out, i = {}, 0
    for k, v in host.items():
        width = v[0].numel()
        out[k] = flat[:, i : i + width].reshape(v.shape)
        i += width
    return out


def _on_rows(
    x: torch.Tensor, rows: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Apply ``fn`` to the samples selected by the host bool mask ``rows`` (in place)."""
    if not rows.any():
        return x
    if rows.all():
        return fn(x).contiguous()
    idx = _h2d(rows.nonzero()[:, 0], x.device)
    return x.index_copy_(0, idx, fn(x.index_select(0, idx)))


def _h2d(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device. To CUDA via pinned memory and ``non_blocking``: a copy from pageable
    memory would make the host wait for all GPU work already queued (a hidden sync)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


@functools.cache
def _const(name: str, device: torch.device) -> torch.Tensor:
    """Constant tables, copied to each device once."""
    return {"luma": torch.tensor(_LUMA), "ramp": _RAMP}[name].to(device)


def _luma(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB -> ``[B, 1, H, W]`` luma (``weights`` = _LUMA on x's device)."""
    return torch.matmul(weights, x.flatten(2)).view(x.shape[0], 1, *x.shape[2:])


def _hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_hue`` with a per-sample shift (``[B, 1, 1, 1]``, in turns).

    A hue shift keeps HSV value (max) and chroma (max - min): find the hue ``h`` in sextants
    [0, 6), shift it, and rebuild each channel as ``min + chroma * ramp(h)`` (the hexcone
    ramps ``|h - 3| - 1``, ``2 - |h - 2|``, ``2 - |h - 4|`` clamped to [0, 1]). Float
    arithmetic only: on CPU, ``torch.where``, comparisons and ``max(dim)`` with indices are
    several times slower than a float op, so the "which channel is the max" branches of the
    hue formula are 0/1 float masks from ``1 - sign(max - channel)`` (torchvision's tie
    order: r, then g, then b).
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    maxc, minc = x.amax(1, keepdim=True), x.amin(1, keepdim=True)
    chroma = maxc - minc
    r_max = (maxc - r).sign_().neg_().add_(1)
    g_max = (maxc - g).sign_().neg_().add_(1).mul_(1 - r_max)
    h_b = (r - g).add_(chroma, alpha=4)  # hue * chroma where b is the max; r: g - b; g: b - r + 2c
    h = (g - b).sub_(h_b).mul_(r_max)
    h = h.add_((b - r).add_(chroma, alpha=2).sub_(h_b).mul_(g_max)).add_(h_b)
    h = h.div_(chroma.clamp_min(1e-12)).add_(6 * shift)
    h = h.sub_(torch.floor(h / 6).mul_(6))  # [0, 6)
    centre, sign, offset = _const("ramp", x.device)
    return (h - centre).abs_().mul_(sign).add_(offset).clamp_(0, 1).mul_(chroma).add_(minc)


def _gauss_blur(x: torch.Tensor, sigma: torch.Tensor, k: int) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per sample, reflect padding (torchvision's).

    Each sample-channel is one group of a depthwise conv with its own kernel, so one conv
    call blurs the whole batch with per-sample sigmas.
    """
    n, c, h, w = x.shape
    t = torch.arange(k, dtype=torch.float64) - k // 2
    ker = torch.exp(-(t**2) / (2 * sigma[:, None] ** 2))
    ker = _h2d((ker / ker.sum(1, keepdim=True)).repeat_interleave(c, 0).float(), x.device)
    g = n * c
    y = F.pad(x.reshape(1, g, h, w), (k // 2,) * 4, mode="reflect")
    y = F.conv2d(y, ker.view(g, 1, 1, k), groups=g)
    y = F.conv2d(y, ker.view(g, 1, k, 1), groups=g)
    return y.view(n, c, h, w)
