"""Known answers for the loss or update rule of finetune, gradient_ascent, neggrad_plus,
l1_sparse, gradient_penalty, alignment_calibration, contrastive_unlearning and retrain.

Each test feeds a fixed tiny input to the method, computes the expected value *here*,
in float64 numpy, from the method's equation (never through the method's code), and
checks that a perturbed equation (a weight x 1.1, a wrong sign, another temperature)
would fail the same comparison. The encoder is a linear map W with closed-form
per-sample losses and gradients, so no expected value leans on autograd.

Also here: the MoCo and BatchNorm fixes of the fidelity review (NegGrad+'s two terms see one
pre-step queue; AC's beta term never forwards a forget-only batch; SimCLR forwards each
view alone).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from torch import nn

from bench import Batch, DataInfo, DataView, Encoder, UnlearnContext
from bench.config import TrainBudget
from bench.encoders.moco_v2 import MoCoV2
from bench.encoders.simclr import SimCLR
from bench.registry import backbones
from bench.training import train_encoder
from methods.alignment_calibration import AlignmentCalibration
from methods.contrastive_unlearning import ContrastiveUnlearning
from methods.finetune import Finetune
from methods.gradient_ascent import GradientAscent
from methods.gradient_penalty import GradientPenalty
from methods.l1_sparse import L1Sparse
from methods.neggrad_plus import NegGradPlus
from methods.retrain import Retrain

SIZE, C, K = 4, 3, 5
INFO = DataInfo(C, ("a", "b", "c"), (3, SIZE, SIZE), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
CPU = torch.device("cpu")
MAGNITUDE = 0.1  # weight of the magnitude term of the linear encoder's loss


# one torch thread: tests/conftest.py sets it for the whole session


# --------------------------------------------------------------------------- a linear encoder


class Flat(nn.Module):
    """Backbone f(v) = W vec(v): no bias, no BatchNorm, so every loss has a closed form."""

    def __init__(self, d_in: int, k: int):
        super().__init__()
        self.w = nn.Linear(d_in, k, bias=False)
        self.out_dim = k

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.w(v.flatten(1))


class Linear(Encoder):
    """l_i = 0.5 ||W v1_i - W v2_i||^2 + 0.5 * MAGNITUDE * ||W v1_i||^2 on deterministic views
    (the 'none' preset only normalises), ``embed`` = W v / ||W v||."""

    augment_preset = "none"

    def __init__(self, info: DataInfo = INFO, seed: int = 0):
        torch.manual_seed(seed)
        super().__init__(Flat(3 * SIZE * SIZE, K), info)

    def project(self, f: torch.Tensor) -> torch.Tensor:
        return f

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        a, b = self.backbone(v1), self.backbone(v2)
        return 0.5 * (a - b).pow(2).sum(1) + 0.5 * MAGNITUDE * a.pow(2).sum(1)


class LinearClassifier(Linear):
    """The supervised contract on the linear map: ``logits = V W v``, CE objective."""

    capabilities = frozenset({"labels", "logits", "views"})

    def __init__(self, info: DataInfo = INFO, seed: int = 0):
        super().__init__(info, seed)
        self.fc = nn.Linear(K, info.num_classes, bias=False)

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(v))

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.prepare(x))

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.logits(v1), batch.y, reduction="none")


def view(n: int, start: int, seed: int, name: str, labels: torch.Tensor | None = None) -> DataView:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    y = labels if labels is not None else torch.arange(n) % C
    return DataView(x, y, torch.arange(start, start + n), name)


def data() -> dict[str, DataView]:
    return {"forget": view(6, 0, 1, "forget"), "retain": view(12, 100, 2, "retain"), "val": view(6, 500, 3, "val")}


def context(enc: Encoder, method, views: dict[str, DataView], batch_size: int = 64, scratch=None) -> UnlearnContext:
    return UnlearnContext(
        enc, needs=type(method).needs, data=views, original=None, device=CPU, precision="fp32",
        seed=0, budget=TrainBudget(batch_size=batch_size), time_limit_s=600.0, num_classes=C,
        train_from_scratch=scratch,
    )


def recorded(ctx: UnlearnContext) -> list[tuple[float, np.ndarray]]:
    """Wrap ``ctx.step``: each step's (loss value, W before the step)."""
    steps: list[tuple[float, np.ndarray]] = []
    step = ctx.step

    def spy(opt, loss, scheduler=None):
        steps.append((float(loss.detach()), weights(ctx.encoder)))
        return step(opt, loss, scheduler)

    ctx.step = spy  # type: ignore[method-assign]
    return steps


def weights(enc: Encoder) -> np.ndarray:
    return enc.backbone.w.weight.detach().double().numpy().copy()


def pixels(enc: Encoder, v: DataView) -> np.ndarray:
    """The normalised inputs as rows (the data pipeline, not the method)."""
    return enc.prepare(v.x).flatten(1).double().numpy()


def assert_known(got: float | np.ndarray, expected, perturbed, rtol: float = 1e-5) -> None:
    """``got`` matches the equation and would not match the perturbed one."""
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-7)
    assert not np.allclose(got, perturbed, rtol=rtol, atol=1e-7), "the perturbation went unnoticed"


# The linear encoder's loss on identical views: 0.5 * MAGNITUDE * ||W x||^2, gradient MAGNITUDE * W x x^T.
def mean_loss(w: np.ndarray, x: np.ndarray) -> float:
    return float((0.5 * MAGNITUDE * ((x @ w.T) ** 2).sum(1)).mean())


def mean_grad(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return MAGNITUDE * w @ (x.T @ x) / len(x)


def sgd_first_step(w: np.ndarray, grad: np.ndarray, lr: float, wd: float) -> np.ndarray:
    """SGD's first step (the momentum buffer starts as the gradient): w - lr (g + wd w)."""
    return w - lr * (grad + wd * w)


# --------------------------------------------------------------------------- finetune, gradient ascent


def test_finetune_is_one_sgd_step_on_the_retain_objective_with_weight_decay() -> None:
    views, enc = data(), Linear()
    ft = Finetune(epochs=1, lr=0.05)
    ctx = context(enc, ft, views)
    steps = recorded(ctx)
    ft.unlearn(ctx)
    w0, x_r = steps[0][1], pixels(enc, views["retain"])
    assert len(steps) == 1 and ft.weight_decay == 5e-4
    assert_known(steps[0][0], mean_loss(w0, x_r), -mean_loss(w0, x_r))
    expected = sgd_first_step(w0, mean_grad(w0, x_r), 0.05, 5e-4)
    assert_known(weights(enc), expected, sgd_first_step(w0, mean_grad(w0, x_r), 0.05, 0.0))


def test_gradient_ascent_is_one_sgd_step_up_the_forget_objective() -> None:
    views, enc = data(), Linear()
    ga = GradientAscent(epochs=1, lr=0.05)
    ctx = context(enc, ga, views)
    steps = recorded(ctx)
    ga.unlearn(ctx)
    w0, x_f = steps[0][1], pixels(enc, views["forget"])
    assert_known(steps[0][0], -mean_loss(w0, x_f), mean_loss(w0, x_f))  # wrong sign fails
    expected = sgd_first_step(w0, -mean_grad(w0, x_f), 0.05, 5e-4)
    assert_known(weights(enc), expected, sgd_first_step(w0, mean_grad(w0, x_f), 0.05, 5e-4))


# --------------------------------------------------------------------------- neggrad_plus, l1_sparse


@pytest.mark.parametrize("alpha", [None, 0.7])
def test_neggrad_plus_loss_is_alpha_retain_minus_one_minus_alpha_forget(alpha: float | None) -> None:
    views, enc = data(), Linear()
    ng = NegGradPlus(epochs=1, lr=0.05, alpha=alpha)
    ctx = context(enc, ng, views)
    steps = recorded(ctx)
    ng.unlearn(ctx)
    a = 12 / 18 if alpha is None else alpha  # None: |D_r| / (|D_r| + |D_f|)
    w0 = steps[0][1]
    l_r, l_f = mean_loss(w0, pixels(enc, views["retain"])), mean_loss(w0, pixels(enc, views["forget"]))
    assert_known(steps[0][0], a * l_r - (1 - a) * l_f, 1.1 * a * l_r - (1 - 1.1 * a) * l_f)
    g = a * mean_grad(w0, pixels(enc, views["retain"])) - (1 - a) * mean_grad(w0, pixels(enc, views["forget"]))
    assert_known(weights(enc), sgd_first_step(w0, g, 0.05, 5e-4), sgd_first_step(w0, g, 0.05, 0.0))


def test_l1_sparse_adds_a_linearly_decaying_l1_term_per_step() -> None:
    views, enc = data(), Linear()
    lam = 1e-2
    l1 = L1Sparse(epochs=3, lr=0.05, lam=lam)  # one batch per epoch: T = 3 steps
    ctx = context(enc, l1, views)
    steps = recorded(ctx)
    l1.unlearn(ctx)
    x_r = pixels(enc, views["retain"])
    a_t = [lam * (1 - t / 2) for t in range(3)]  # lambda, lambda/2, 0
    per_epoch = [lam * (1 - e / 3) for e in range(3)]  # Jia et al.'s per-epoch decay
    got = [loss for loss, _ in steps]
    expected = [mean_loss(w, x_r) + a * np.abs(w).sum() for (_, w), a in zip(steps, a_t)]
    perturbed = [mean_loss(w, x_r) + a * np.abs(w).sum() for (_, w), a in zip(steps, per_epoch)]
    assert_known(np.array(got), np.array(expected), np.array(perturbed))


# --------------------------------------------------------------------------- gradient_penalty


def test_gradient_penalty_loss_is_capped_ascent_plus_input_gradient_penalty() -> None:
    """l_i = 0.5 MAGNITUDE ||W x||^2 on identical views; its input gradient is MAGNITUDE W^T W x
    (view 1) and 0 (view 2), so ||grad_x l_i|| = MAGNITUDE ||W^T W x_i||."""
    views, enc = data(), Linear()
    w0, x_f = weights(enc), pixels(enc, views["forget"])
    losses = 0.5 * MAGNITUDE * ((x_f @ w0.T) ** 2).sum(1)
    norms = MAGNITUDE * np.linalg.norm(x_f @ (w0.T @ w0), axis=1)
    c_loss, c_grad, lam = float(np.median(losses)), float(norms.mean()) * 0.5, 3.0  # half the rows capped
    gp = GradientPenalty(epochs=1, lr=1e-3, lam=lam, c_loss=c_loss, c_grad=c_grad)
    ctx = context(enc, gp, views)
    steps = recorded(ctx)
    gp.unlearn(ctx)

    def equation(lam_: float, cap: float) -> float:
        return float(-np.minimum(losses, cap).mean() + lam_ * ((norms - c_grad) ** 2).mean())

    assert_known(steps[0][0], equation(lam, c_loss), equation(1.1 * lam, c_loss))
    assert not np.isclose(steps[0][0], equation(lam, np.inf))  # the clamp is in the loss


# --------------------------------------------------------------------------- alignment_calibration


def test_alignment_calibration_loss_is_the_weighted_infonce_plus_the_scaled_calibration() -> None:
    """L = [sum_r l_i + alpha sum_f l_i] / (|B_r| + alpha |B_f|) + beta f mean_f cos(z1, z3)."""
    views, enc = data(), Linear()
    f, r = views["forget"], views["retain"]
    x = torch.cat([r.x[:4], f.x[:3]])
    batch = Batch(x, torch.zeros(7, dtype=torch.long), torch.arange(7))
    is_forget = torch.tensor([False] * 4 + [True] * 3)
    partners = torch.cat([r.x[:4], f.x[[1, 2, 0]]])  # forget rows paired with another forget image
    v1, v_tilde, v3 = enc.prepare(x), enc.prepare(partners), enc.prepare(torch.flip(x, dims=(3,)))
    alpha, beta, frac = 1.6, 2.0, 6 / 18
    ac = AlignmentCalibration(alpha=alpha, beta=beta)
    with torch.no_grad():
        got = float(ac.loss(context(enc, ac, views), batch, is_forget, (v1, v_tilde, v3), frac))

    w = weights(enc)
    a, b, c = (t.flatten(1).double().numpy() @ w.T for t in (v1, v_tilde, v3))
    l_i = 0.5 * ((a - b) ** 2).sum(1) + 0.5 * MAGNITUDE * (a**2).sum(1)
    m = is_forget.numpy()
    unit = lambda z: z / np.linalg.norm(z, axis=1, keepdims=True)  # noqa: E731
    cos = (unit(a) * unit(c)).sum(1)[m].mean()

    def equation(alpha_: float, frac_: float) -> float:
        return float((l_i[~m].sum() + alpha_ * l_i[m].sum()) / ((~m).sum() + alpha_ * m.sum()) + beta * frac_ * cos)

    assert_known(got, equation(alpha, frac), equation(1.1 * alpha, frac))
    assert not np.isclose(got, equation(alpha, 1.0))  # the |D_f| / |D| factor is in the loss


def tiny_simclr() -> SimCLR:
    torch.manual_seed(0)
    return SimCLR(backbones.get("convnet-s")(in_channels=3, image_size=8), _info8()).train()


def _info8() -> DataInfo:
    return DataInfo(C, ("a", "b", "c"), (3, 8, 8), (0.5,) * 3, (0.25,) * 3)


def _batch8(n: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g), torch.zeros(n, dtype=torch.long),
                 torch.arange(n))


def batchnorm_stats(enc: Encoder) -> list[torch.Tensor]:
    return [b.clone() for n, b in enc.named_buffers() if "running" in n]


def test_ac_beta_term_never_forwards_a_forget_only_batch() -> None:
    """Running statistics after the AC loss = those of the loss forwards (t1, x~) plus one
    forward of the whole t3 batch, as the code's; a forward of the forget rows alone (the
    former behaviour) would leave others. The beta term's z are whole-batch embeddings."""
    enc, batch = tiny_simclr(), _batch8(8, 0)
    gen = torch.Generator().manual_seed(1)
    v1, v2, v3 = (enc.augment(batch.x, gen) for _ in range(3))
    is_forget = torch.tensor([True, False, True, False, False, True, False, False])
    ac = AlignmentCalibration(beta=1.0)
    ctx = UnlearnContext(enc, needs=ac.needs, data={}, original=None, device=CPU, precision="fp32", seed=0,
                         budget=TrainBudget(batch_size=8), time_limit_s=60.0, num_classes=C)
    twin, old, probe = copy.deepcopy(enc), copy.deepcopy(enc), copy.deepcopy(enc)
    loss = ac.loss(ctx, batch, is_forget, (v1, v2, v3), 0.5)
    loss.backward()  # the graph survives the repeated forward
    with torch.no_grad():
        plain = twin.pair_loss(v1, v2, batch).mean()
        z3 = twin.embed(v3)
        z = probe.embed(v1)  # train mode: whole-batch statistics, as in the loss forward
        old.pair_loss(v1, v2, batch), old.embed(v1[is_forget]), old.embed(v3[is_forget])
    for got, want in zip(batchnorm_stats(enc), batchnorm_stats(twin)):
        torch.testing.assert_close(got, want)
    assert any(not torch.allclose(a, b) for a, b in zip(batchnorm_stats(enc), batchnorm_stats(old)))
    cos = (z[is_forget] * z3[is_forget]).sum(1).mean()
    torch.testing.assert_close(loss.detach(), plain + 0.5 * cos)


def test_simclr_forwards_each_view_alone() -> None:
    """SimCLR's loss = lightly's NT-Xent of two separate forwards (MUC's and lightly's code),
    not of one forward over the 2B concatenation."""
    enc, batch = tiny_simclr(), _batch8(8, 2)
    gen = torch.Generator().manual_seed(3)
    v1, v2 = enc.augment(batch.x, gen), enc.augment(batch.x, gen)
    ref = NTXentLoss(temperature=0.5)
    with torch.no_grad():
        got = enc.pair_loss(v1, v2, batch).mean()
        two = ref(enc.head(enc.backbone(v1)), enc.head(enc.backbone(v2)))
        z = enc.head(enc.backbone(torch.cat([v1, v2])))
        one = ref(z[:8], z[8:])
    assert_known(float(got), float(two), float(one))


# --------------------------------------------------------------------------- MoCo: one pre-step queue


class FixedViewMoCo(MoCoV2):
    augment_preset = "none"


def test_neggrad_plus_with_moco_scores_both_terms_against_the_pre_step_queue() -> None:
    torch.manual_seed(0)
    enc = FixedViewMoCo(backbones.get("convnet-s")(in_channels=3, image_size=8), _info8(), memory_bank=64).train()
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=g)
    views = {"retain": DataView(x[:16], torch.zeros(16, dtype=torch.long), torch.arange(16), "retain"),
             "forget": DataView(x[16:], torch.zeros(16, dtype=torch.long), torch.arange(16, 32), "forget")}
    before = copy.deepcopy(enc)
    bank = enc.criterion.memory_bank.bank.clone()
    ng = NegGradPlus(epochs=1, lr=0.01, alpha=0.5)
    ctx = UnlearnContext(enc, needs=ng.needs, data=views, original=None, device=CPU, precision="fp32", seed=0,
                         budget=TrainBudget(batch_size=16), time_limit_s=60.0, num_classes=C)
    losses: list[float] = []
    step = ctx.step
    ctx.step = lambda opt, loss, scheduler=None: losses.append(float(loss.detach())) or step(opt, loss)
    ng.unlearn(ctx)

    ref = NTXentLoss(temperature=0.1, memory_bank_size=(64, 128))
    with torch.no_grad():
        def term(v: DataView, queue: torch.Tensor) -> tuple[float, torch.Tensor]:
            xv = before.prepare(v.x)
            q, k = before.head(before.backbone(xv)), before.head_m(before.backbone_m(xv))
            ref.memory_bank.bank.copy_(queue)
            return float(ref(q, k)), F.normalize(k, dim=1)

        l_r, k_r = term(views["retain"], bank)
        l_f, k_f = term(views["forget"], bank)
        stale = torch.cat([k_r, bank[16:]])  # the former behaviour: retain keys already queued
        l_f_stale, _ = term(views["forget"], stale)
    assert len(losses) == 1
    assert_known(losses[0], 0.5 * l_r - 0.5 * l_f, 0.5 * l_r - 0.5 * l_f_stale)
    queue = enc.criterion.memory_bank
    assert int(queue.bank_ptr) == 32 and int(queue.held_n) == 0  # both key sets queued at the step end
    # the queued keys are those of the retain batch, then the forget batch (each batch in its shuffled order)
    for got, want in ((queue.bank[:16], k_r), (queue.bank[16:32], k_f)):
        assert torch.allclose(torch.sort(got.sum(1)).values, torch.sort(want.sum(1)).values, atol=1e-5)


def test_moco_keys_held_by_a_restored_measurement_never_reach_the_queue() -> None:
    torch.manual_seed(0)
    enc = MoCoV2(backbones.get("convnet-s")(in_channels=3, image_size=8), _info8(), memory_bank=32).train()
    batch = _batch8(8, 5)
    saved = {n: b.clone() for n, b in enc.named_buffers()}
    enc.objective(batch, torch.Generator().manual_seed(0)).mean().backward()  # a measurement with grad
    assert int(enc.criterion.memory_bank.held_n) == 8
    with torch.no_grad():
        for n, b in enc.named_buffers():
            b.copy_(saved[n])  # what gradient_penalty's caps and SSD do afterwards
    enc.on_step_end()
    assert torch.equal(enc.criterion.memory_bank.bank, saved["criterion.memory_bank.bank"])
    assert int(enc.criterion.memory_bank.bank_ptr) == 0


# --------------------------------------------------------------------------- contrastive_unlearning


def _cu_equation(zu: np.ndarray, zr: np.ndarray, pull: np.ndarray, push: np.ndarray, tau: float) -> float:
    """The L_UL of docs/methods.md, row by row: s = zu zr^T / tau minus the row max, log term dropped where N(i)
    is empty, rows with an empty P(i) left out."""
    rows = []
    for i in range(len(zu)):
        s = zu[i] @ zr.T / tau
        s = s - s[pull[i] | push[i]].max()
        if not pull[i].any():
            continue
        log_n = np.log(np.exp(s[push[i]]).sum()) if push[i].any() else 0.0
        rows.append(-(s[pull[i]] - log_n).mean())
    return float(np.mean(rows))


def _unit(z: np.ndarray) -> np.ndarray:
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def test_cu_supervised_loss_is_lambda_ul_l_ul_plus_lambda_ce_ce_on_clean_images() -> None:
    views, enc = data(), LinearClassifier()
    fb = Batch(views["forget"].x[:4], torch.tensor([0, 1, 2, 0]), torch.arange(4))
    rb = Batch(views["retain"].x[:4], torch.tensor([0, 0, 1, 1]), torch.arange(100, 104))  # class 2: N(i) empty
    cu = ContrastiveUnlearning(tau=0.7, lambda_ul=3.0, lambda_ce=1.0)
    with torch.no_grad():
        got = float(cu.supervised_loss(context(enc, cu, views), fb, rb))
    w, v = weights(enc), enc.fc.weight.detach().double().numpy()
    hu, hr = pixels(enc, DataView(fb.x, fb.y, fb.idx, "f")) @ w.T, pixels(enc, DataView(rb.x, rb.y, rb.idx, "r")) @ w.T
    same = fb.y.numpy()[:, None] == rb.y.numpy()[None, :]
    logits = hr @ v.T
    ce = float((np.log(np.exp(logits).sum(1)) - logits[np.arange(4), rb.y.numpy()]).mean())

    def equation(tau: float, lam: float) -> float:
        return lam * _cu_equation(_unit(hu), _unit(hr), ~same, same, tau) + 1.0 * ce

    assert_known(got, equation(0.7, 3.0), equation(0.77, 3.0))
    assert not np.isclose(got, equation(0.7, 3.3))


def test_cu_self_supervised_loss_pushes_from_own_views_and_pulls_to_retain() -> None:
    """Label-free: P(i) = every retain sample, N(i) = the other view of x_i (identical under
    the 'none' preset), retain term = the encoder's objective on the retain batch."""
    views, enc = data(), Linear()
    fb = Batch(views["forget"].x[:3], views["forget"].y[:3], views["forget"].idx[:3])
    rb = Batch(views["retain"].x[:3], views["retain"].y[:3], views["retain"].idx[:3])
    cu = ContrastiveUnlearning(tau=0.7, lambda_ul=3.0, lambda_ce=1.0)
    with torch.no_grad():
        got = float(cu.self_supervised_loss(context(enc, cu, views), fb, rb))
    w = weights(enc)
    zu = _unit(pixels(enc, DataView(fb.x, fb.y, fb.idx, "f")) @ w.T)
    x_r = pixels(enc, DataView(rb.x, rb.y, rb.idx, "r"))
    cols = np.concatenate([_unit(x_r @ w.T), zu])  # retain columns, then the views of x_i
    pull = np.zeros((3, 6), dtype=bool)
    pull[:, :3] = True
    push = np.zeros_like(pull)
    push[np.arange(3), 3 + np.arange(3)] = True

    def equation(tau: float) -> float:
        return 3.0 * _cu_equation(zu, cols, pull, push, tau) + mean_loss(w, x_r)

    assert_known(got, equation(0.7), equation(0.77))


# --------------------------------------------------------------------------- retrain


def test_retrain_is_the_model_trained_from_scratch_on_the_retain_set() -> None:
    """Retrain returns exactly what training a fresh model on D_r with the recipe and seed
    gives, whatever the starting weights, and charges that training's time."""
    views = data()
    budget = TrainBudget(epochs=2, batch_size=8, lr=0.05, optimizer="sgd")
    seen: list[torch.Tensor] = []

    def scratch(v: DataView) -> tuple[Encoder, float]:
        seen.append(v.idx.clone())
        fresh = Linear(seed=7)
        return fresh, train_encoder(fresh, v, budget, CPU, "fp32", seed=7)

    start = Linear(seed=1)
    ctx = context(start, Retrain(), views, scratch=scratch)
    Retrain().unlearn(ctx)

    def trained_on(v: DataView) -> np.ndarray:
        fresh = Linear(seed=7)
        train_encoder(fresh, v, budget, CPU, "fp32", seed=7)
        return weights(fresh)

    everything = DataView.concat([views["retain"], views["forget"]], "all")
    assert_known(weights(start), trained_on(views["retain"]), trained_on(everything))
    assert torch.equal(seen[0], views["retain"].idx) and ctx.charged_seconds > 0
