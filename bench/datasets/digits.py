"""sklearn's bundled 8x8 digits, upsampled to 16x16 RGB: the embedded default, needs no files.

1,797 images; a fixed stratified 2/3 : 1/3 train/test split (seed 0), so every
machine sees the same members and non-members. Digits shows no membership
signal at any budget; it is a plumbing check, not a privacy benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.data import ImageData
from bench.registry import register_dataset

SIZE = 16


@register_dataset("digits", description="sklearn 8x8 digits upsampled to 16x16 (embedded, no files)")
class Digits:
    shape = (1201, 596, SIZE, 10)  # train, test, image side, classes (for cost estimates)

    @staticmethod
    def check(root: Path, arg: str | None, download: bool) -> str | None:
        return None

    @staticmethod
    def load(root: Path, arg: str | None, download: bool, cache: Path | None = None) -> ImageData:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
        y = torch.from_numpy(d.target.astype(np.int64))
        rng = np.random.default_rng(0)
        test_mask = np.zeros(len(y), dtype=bool)
        for c in range(10):
            rows = np.flatnonzero(d.target == c)
            test_mask[rng.permutation(rows)[: len(rows) // 3]] = True
        tr, te = torch.from_numpy(~test_mask), torch.from_numpy(test_mask)
        return ImageData("digits", x[tr], y[tr], x[te], y[te], [str(c) for c in range(10)])
