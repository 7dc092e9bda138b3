"""Batched augmentation: shapes, per-sample randomness, seeding, and the deterministic pieces."""

from __future__ import annotations

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
    torch.testing.assert_close(aug(x, _gen(0)), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(aug.prepare(x), ref, atol=1e-5, rtol=0)


def test_flip_only_config_flips() -> None:
    cfg = AugmentConfig(32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0, **NO_COLOUR)
    x = _images()
    out = BatchAugment(cfg, MEAN, STD)(x, _gen(0))  # goes through grid_sample
    torch.testing.assert_close(out, _normalised(x).flip(-1), atol=1e-4, rtol=0)


def test_grayscale_gives_equal_channels() -> None:
    cfg = AugmentConfig(32, gray_p=1.0, jitter_p=0.0)
    out = BatchAugment(cfg, [0.0] * 3, [1.0] * 3)(_images(), _gen(0))
    torch.testing.assert_close(out[:, 1], out[:, 0])
    torch.testing.assert_close(out[:, 2], out[:, 0])
    assert out.min() >= 0 and out.max() <= 1


def test_single_channel_input() -> None:
    aug = BatchAugment(AugmentConfig.simclr(32), [0.5], [0.25])
    out = aug(_images(c=1), _gen(0))
    assert out.shape == (8, 1, 32, 32) and torch.isfinite(out).all()


def test_hue_jitter_approximates_torchvision() -> None:
    """Each hue-jittered colour is close to torchvision's HSV hue shift by some h in range."""
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
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
    base = (colour.float() / 255).view(3, 1, 1)
    tv = torch.stack([tvf.adjust_hue(base, float(h)) for h in torch.linspace(-0.1, 0.1, 81)])
    err = torch.cdist(out, tv.view(-1, 3)).min(1).values
    assert err.max() < 0.03
    assert out.std(0).max() > 0.02  # the hue actually varies across samples
