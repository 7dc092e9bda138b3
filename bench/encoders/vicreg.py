"""VICReg (Bardes et al. 2022) with lightly's projection head and loss."""

from __future__ import annotations

import torch
from torch import nn

from bench.data import Batch
from bench.encoders.base import DataInfo, Encoder, full_precision
from bench.registry import register_encoder


@register_encoder(
    "vicreg",
    framework="lightly",
    description="VICReg: 3-layer BN head, invariance 25 + variance 25 + covariance 1",
)
class VICReg(Encoder):
    """Per-sample loss (our definition; the variance and covariance terms are batch-level):

        l_n = L + lambda (inv_n - inv) + mu/2 sum_x <dV/dvar, s_n - var>
                + nu sum_x <dK/dCov, c_n - Cov>

    where ``inv_n`` is sample n's own mean squared view difference (the invariance term is
    an exact per-sample mean), ``s_n = N/(N-1) (x_n - mean)^2`` and ``c_n = N/(N-1)
    (x_n - mean)(x_n - mean)^T`` are sample n's terms of the unbiased variance and
    covariance estimates (their mean is the estimate), and the variance hinge V and
    covariance penalty K are linearised around the batch. So: the batch loss, plus sample
    n's exact invariance excess, plus its first-order effect on the variance and
    covariance terms. The corrections sum to zero identically, so the mean (and its
    gradient) is lightly's loss exactly; values can be below the batch loss.

    Head width defaults to 1024 at CPU scale (paper: 8192; ``hidden_dim`` / ``proj_dim``).
    """

    augment_preset = "simclr"

    def __init__(
        self,
        backbone: nn.Module,
        info: DataInfo,
        proj_dim: int = 1024,
        hidden_dim: int = 1024,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        image_size: int | None = None,
    ):
        super().__init__(backbone, info, image_size)
        # lightly (and the torchvision it imports) loads here, not at module level: validate and ls import
        # this module without building a model
        from lightly.loss import VICRegLoss
        from lightly.models.modules.heads import VICRegProjectionHead

        self.head = VICRegProjectionHead(self.feat_dim, hidden_dim, proj_dim)
        self.criterion = VICRegLoss(lambda_param=lambda_param, mu_param=mu_param, nu_param=nu_param)

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        za, zb = self.project_pair(v1, v2)
        return self.per_sample_loss(za.float(), zb.float())

    def per_sample_loss(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """[B] values whose mean is ``VICRegLoss()(za, zb)`` (see the class docstring)."""
        crit = self.criterion
        with full_precision(za):
            za, zb = za.float(), zb.float()
            loss = crit(za, zb)
            inv_n = (za - zb).pow(2).mean(1)
            extra = crit.lambda_param * (inv_n - inv_n.mean())
            for x in (za, zb):
                var_c, cov_c = self._stat_corrections(x)
                extra = extra + 0.5 * crit.mu_param * var_c + crit.nu_param * cov_c
        return loss + extra

    def _stat_corrections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First-order per-sample corrections of lightly's variance and covariance terms."""
        n, d = x.shape
        xc = x - x.mean(0)
        s = xc.pow(2) * (n / (n - 1))  # per-sample terms of the unbiased variance
        var = s.mean(0)
        std = torch.sqrt(var.detach() + self.criterion.eps)
        g_var = torch.where(std < 1, -0.5 / std, torch.zeros_like(std)) / d
        var_c = (s - var) @ g_var
        cov = xc.T @ xc / (n - 1)
        g_cov = 2 * cov.detach() / d
        g_cov.fill_diagonal_(0)
        cov_c = ((xc @ g_cov) * xc).sum(1) * (n / (n - 1)) - (g_cov * cov).sum()
        return var_c, cov_c
