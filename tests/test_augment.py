"""Batched augmentation: shapes, per-sample randomness, seeding, and the deterministic pieces."""

from __future__ import annotations

import colorsys

import pytest
import torch

from bench.augment import AugmentConfig, BatchAugment

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
NO_COLOUR = dict(jitter_p=0.0, gray_p=0.0)


def _images(n: int = 8, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)


def _normalised(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return (x.float() / 255 - m) / s


def _close(a: torch.Tensor, b: torch.Tensor, atol: float) -> bool:
    """Max-abs comparison (torch.testing's first call costs ~0.5 s of imports)."""
    return a.shape == b.shape and (a - b).abs().max().item() <= atol


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("preset", ["simclr", "moco", "byol", "supervised", "none"])
@pytest.mark.parametrize("size", [32, 64])
def test_output_shape_dtype_layout(preset: str, size: int) -> None:
    aug = BatchAugment(AugmentConfig.preset(preset, size), MEAN, STD)
    for x in (_images(), _images(h=40, w=48)):
        for out in (aug(x, _gen(0)), aug.prepare(x)):
            assert out.shape == (8, 3, size, size)
            assert out.dtype == torch.float32
            assert out.is_contiguous(memory_format=torch.channels_last)
            assert torch.isfinite(out).all()


def test_samples_of_one_batch_differ() -> None:
    x = _images(1).expand(16, -1, -1, -1)
    out = BatchAugment(AugmentConfig.simclr(32), MEAN, STD)(x, _gen(0))
    flat = out.flatten(1)
    dist = torch.cdist(flat, flat)
    assert (dist + torch.eye(16) * 1e9).min() > 1e-3  # every pair of views differs


def test_seeded_determinism() -> None:
    aug = BatchAugment(AugmentConfig.byol(64), MEAN, STD)  # every op on, blur and solarize too
    x = _images(h=64, w=64)
    a, b = aug(x, _gen(1)), aug(x, _gen(1))
    assert torch.equal(a, b)
    assert not torch.allclose(a, aug(x, _gen(2)))


def test_none_preset_is_plain_normalisation() -> None:
    aug = BatchAugment(AugmentConfig.none(32), MEAN, STD)
    x = _images()
    ref = _normalised(x)
    assert _close(aug(x, _gen(0)), ref, 1e-5)
    assert _close(aug.prepare(x), ref, 1e-5)
    odd = _images(h=40, w=48)  # not square: both paths resize the whole image
    assert torch.equal(aug(odd, _gen(0)), aug.prepare(odd))


def test_flip_only_config_flips() -> None:
    cfg = AugmentConfig(32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0, **NO_COLOUR)
    x = _images()
    out = BatchAugment(cfg, MEAN, STD)(x, _gen(0))  # goes through grid_sample
    assert _close(out, _normalised(x).flip(-1), 1e-4)


def test_crop_geometry() -> None:
    """On coordinate-ramp images the output reads back each sample's sampling grid: a box
    with area and aspect ratio in range, inside the image, mirrored when flipped."""
    lo, r0, r1 = 0.25, 0.5, 2.0
    cfg = AugmentConfig(16, crop_scale=(lo, 1.0), crop_ratio=(r0, r1), **NO_COLOUR)
    ramp = torch.arange(64, dtype=torch.uint8) * 4
    x = torch.zeros(64, 3, 64, 64, dtype=torch.uint8)
    x[:, 0], x[:, 1] = ramp.view(1, 1, 64), ramp.view(1, 64, 1)  # column, row index * 4
    out = BatchAugment(cfg, [0.0] * 3, [1.0] * 3)(x, _gen(0)) * (255 / 4)  # pixel coords
    col, row = out[:, 0], out[:, 1]
    dx, dy = col.diff(dim=2), row.diff(dim=1)
    assert _close(dx, dx[:, :1, :1].expand_as(dx), 1e-3)  # one linear map per sample
    assert _close(dy, dy[:, :1, :1].expand_as(dy), 1e-3)
    w, h = dx[:, 0, 0].abs() * 16 / 64, dy[:, 0, 0] * 16 / 64  # box sides / image sides
    eps = 1e-4
    assert ((w * h >= lo - eps) & (w * h <= 1 + eps)).all()
    assert ((w / h >= r0 - eps) & (w / h <= r1 + eps)).all()
    assert col.min() >= 0 and col.max() <= 63 and row.min() >= 0 and row.max() <= 63
    assert (w * h).min() < 0.5  # crops really vary in size
    flipped = dx[:, 0, 0] < 0
    assert 10 < flipped.sum() < 54


def test_grayscale_gives_equal_channels() -> None:
    cfg = AugmentConfig(32, gray_p=1.0, jitter_p=0.0)
    out = BatchAugment(cfg, [0.0] * 3, [1.0] * 3)(_images(), _gen(0))
    assert torch.equal(out[:, 1], out[:, 0])
    assert torch.equal(out[:, 2], out[:, 0])
    assert out.min() >= 0 and out.max() <= 1


def test_single_channel_input() -> None:
    aug = BatchAugment(AugmentConfig.simclr(32), [0.5], [0.25])
    out = aug(_images(c=1), _gen(0))
    assert out.shape == (8, 1, 32, 32) and torch.isfinite(out).all()


def test_hue_jitter_is_an_hsv_hue_shift() -> None:
    """Each hue-jittered colour is the input's HSV hue shift (torchvision's adjust_hue, here
    via stdlib colorsys) by some h in [-0.1, 0.1]."""
    cfg = AugmentConfig(
        4,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter=(0.0, 0.0, 0.0, 0.1),
        jitter_p=1.0,
        gray_p=0.0,
    )
    colour = torch.tensor([180, 100, 70], dtype=torch.uint8)  # muted orange, inside the gamut
    x = colour.view(1, 3, 1, 1).expand(64, 3, 4, 4)
    out = BatchAugment(cfg, [0.0] * 3, [1.0] * 3)(x, _gen(0))[:, :, 0, 0]  # [64, 3]
    hue, sat, val = colorsys.rgb_to_hsv(*(colour.double() / 255).tolist())
    shifts = torch.linspace(-0.1, 0.1, 201).tolist()
    ref = [colorsys.hsv_to_rgb((hue + h) % 1, sat, val) for h in shifts]
    err = torch.cdist(out.double(), torch.tensor(ref, dtype=torch.float64)).min(1).values
    assert err.max() < 2e-3
    assert out.std(0).max() > 0.02  # the hue actually varies across samples


def test_blur_and_solarize() -> None:
    ident = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, **NO_COLOUR)
    x, flat = _images(h=64, w=64), torch.full((4, 3, 64, 64), 77, dtype=torch.uint8)
    blur = BatchAugment(AugmentConfig(64, blur_p=1.0, **ident), [0.0] * 3, [1.0] * 3)
    assert blur(x, _gen(0)).std() < 0.8 * (x.float() / 255).std()  # smooths noise
    assert _close(blur(flat, _gen(0)), flat.float() / 255, 1e-6)  # kernels sum to one
    sol = BatchAugment(AugmentConfig(64, solarize_p=1.0, **ident), [0.0] * 3, [1.0] * 3)
    v = x.float() / 255
    assert _close(sol(x, _gen(0)), torch.where(v >= 0.5, 1 - v, v), 1e-6)
