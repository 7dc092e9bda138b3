"""Defining properties of the standard baselines (random labels, SalUn, SCRUB, SSD, boundary
shrink) on tiny models and random images, with an UnlearnContext built directly."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import Batch, DataInfo, DataView, Encoder, UnlearnContext
from bench.config import TrainBudget
from bench.encoders.simclr import SimCLR
from bench.encoders.supervised import Supervised
from methods.boundary_shrink import BoundaryShrink, nearest_wrong_labels
from methods.random_labels import RandomLabels, random_labels
from methods.salun import SalUn, saliency_masks
from methods.scrub import Scrub, distill_kl, similarity_logits
from methods.ssd import SSD, dampen, fisher_diagonal

C = 4
INFO = DataInfo(C, tuple("abcd"), (3, 8, 8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


class TinyBackbone(nn.Module):
    def __init__(self, out_dim: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinySupervised(Supervised):
    """The real supervised encoder (backbone + linear head, per-sample CE, ``logits(v)``,
    ``one_view``) with identity views: measured losses are exactly the trained ones."""

    augment_preset = "none"


def views(seed: int = 0, n_forget: int = 24, n_retain: int = 48) -> dict[str, DataView]:
    g = torch.Generator().manual_seed(seed)
    n = n_forget + n_retain
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, C, (n,), generator=g)
    full = DataView(x, y, torch.arange(n), "train")
    return {
        "forget": full.subset(torch.arange(n_forget), "forget"),
        "retain": full.subset(torch.arange(n_forget, n), "retain"),
        "val": full.subset(torch.arange(4), "val"),
    }


def supervised(seed: int = 0) -> TinySupervised:
    torch.manual_seed(seed)
    return TinySupervised(TinyBackbone(), INFO)


def simclr(seed: int = 0) -> SimCLR:
    torch.manual_seed(seed)
    return SimCLR(TinyBackbone(), INFO, proj_dim=8)


def context(enc: Encoder, needs: tuple[str, ...], original: Encoder | None = None, seed: int = 0,
            batch_size: int = 16) -> UnlearnContext:
    enc.train()
    return UnlearnContext(
        enc, needs=needs, data=views(), original=original, device=torch.device("cpu"), precision="fp32",
        seed=seed, budget=TrainBudget(epochs=1, batch_size=batch_size), time_limit_s=600.0, num_classes=C,
    )


def frozen(enc: Encoder) -> Encoder:
    return copy.deepcopy(enc).eval().requires_grad_(False)


def params_of(enc: Encoder) -> list[torch.Tensor]:
    return [p.detach().clone() for p in enc.trainable_parameters()]


# --- capabilities ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [RandomLabels, SalUn, BoundaryShrink])
def test_supervised_only_methods_skip_label_free_encoders(cls):
    assert "logits" in cls.unsupported_reason(SimCLR)
    assert cls.unsupported_reason(TinySupervised) is None


@pytest.mark.parametrize("cls", [Scrub, SSD])
def test_scrub_and_ssd_run_on_every_encoder(cls):
    assert cls.unsupported_reason(SimCLR) is None
    assert cls.unsupported_reason(TinySupervised) is None


# --- random labels --------------------------------------------------------------------------

def test_random_labels_are_always_wrong_and_uniform_over_wrong_classes():
    y = torch.arange(20000) % C
    t = random_labels(y, C, torch.Generator().manual_seed(0), wrong_only=True)
    assert (t != y).all()
    # each of the C - 1 wrong classes: 20000 / 3 draws, binomial std ~ 67
    counts = torch.bincount((t - y) % C, minlength=C)
    assert counts[0] == 0
    assert ((counts[1:] - 20000 / (C - 1)).abs() < 5 * math.sqrt(20000 * (1 / 3) * (2 / 3))).all()


def test_random_labels_reference_draw_differs_at_rate_c_minus_1_over_c():
    n = 20000
    y = torch.arange(n) % C
    t = random_labels(y, C, torch.Generator().manual_seed(1), wrong_only=False)
    rate = (t != y).float().mean().item()
    p = (C - 1) / C
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_random_labels_method_trains():
    enc = supervised()
    before = params_of(enc)
    ctx = context(enc, RandomLabels.needs)
    RandomLabels(epochs=1, lr=0.05).unlearn(ctx)
    after = params_of(enc)
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


# --- SalUn ----------------------------------------------------------------------------------

def test_salun_changes_no_weight_outside_its_mask():
    enc = supervised()
    before = params_of(enc)
    twin = copy.deepcopy(enc)
    masks = saliency_masks(context(twin, SalUn.needs), twin.trainable_parameters(), 0.5, SalUn().batch_size)
    n = sum(m.numel() for m in masks)
    assert sum(int(m.sum()) for m in masks) == int(0.5 * n)
    ctx = context(enc, SalUn.needs)
    # momentum and weight decay on (defaults): neither may move a masked-out weight
    SalUn(epochs=2, lr=0.05).unlearn(ctx)
    after = params_of(enc)
    for a, b, m in zip(after, before, masks):
        assert torch.equal(a[~m], b[~m])
    assert any(not torch.equal(a[m], b[m]) for a, b, m in zip(after, before, masks))
    assert ctx.info["mask_fraction"] == pytest.approx(0.5, abs=1e-3)
    # the gradient hooks are gone afterwards: a later loss reaches masked-out weights again
    F.cross_entropy(enc.logits(enc.prepare(ctx.forget.x)), ctx.forget.y).backward()
    assert any(p.grad[~m].abs().sum() > 0 for p, m in zip(enc.trainable_parameters(), masks))


def test_salun_mask_follows_forget_gradient_magnitude():
    enc = supervised()
    ctx = context(enc, SalUn.needs)
    params = enc.trainable_parameters()
    masks = saliency_masks(ctx, params, 0.25)
    grads = [torch.zeros_like(p) for p in params]
    enc.eval()
    for b in ctx.batches(ctx.forget, shuffle=False):
        loss = -F.cross_entropy(enc.logits(enc.prepare(b.x)), b.y)
        for acc, g in zip(grads, torch.autograd.grad(loss, params)):
            acc += g
    inside = torch.cat([g.abs()[m] for g, m in zip(grads, masks)])
    outside = torch.cat([g.abs()[~m] for g, m in zip(grads, masks)])
    assert inside.min() >= outside.max()


# --- SSD ------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha,lam", [(10.0, 1.0), (0.5, 4.0)])
def test_ssd_dampens_exactly_the_selected_weights(alpha, lam):
    g = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.randn(50, generator=g)), nn.Parameter(torch.randn(3, 4, generator=g))]
    imp_d = [torch.rand(p.shape, generator=g) for p in params]
    # I_f spans 0 .. 20 I_D, so some weights are selected and (for the second case) some
    # selected ones have lam I_D / I_f > 1 and must be left at factor 1
    imp_f = [d * 20 * torch.rand(d.shape, generator=g) for d in imp_d]
    before = [p.detach().clone() for p in params]
    count = dampen(params, imp_d, imp_f, alpha, lam)
    selected = 0
    for p, p0, d, f in zip(params, before, imp_d, imp_f):
        sel = f > alpha * d
        selected += int(sel.sum())
        assert torch.equal(p.detach()[~sel], p0[~sel])
        expected = p0[sel] * torch.clamp(lam * d[sel] / f[sel], max=1.0)
        assert torch.equal(p.detach()[sel], expected)
        assert (p.detach()[sel].abs() <= p0[sel].abs()).all()
    assert count == selected > 0


@pytest.mark.parametrize("make", [supervised, simclr])
def test_ssd_end_to_end_matches_its_importances(make):
    enc = make()
    twin = copy.deepcopy(enc)
    buffers = {k: b.clone() for k, b in enc.named_buffers()}
    before = params_of(enc)
    ctx = context(enc, SSD.needs)
    SSD(alpha=1.0).unlearn(ctx)
    # replay the same importance passes (same seed, same order) on an untouched copy
    ref = context(twin, SSD.needs)
    twin.eval()
    ps = twin.trainable_parameters()
    imp_f = fisher_diagonal(ref, ref.forget, ps)
    imp_d = fisher_diagonal(ref, DataView.concat([ref.retain, ref.forget], "full"), ps)
    changed = 0
    for p, p0, d, f in zip(params_of(enc), before, imp_d, imp_f):
        sel = f > 1.0 * d
        assert torch.equal(p[~sel], p0[~sel])
        assert torch.equal(p[sel], p0[sel] * torch.clamp(d[sel] / f[sel], max=1.0))
        changed += int(sel.sum())
    assert changed > 0
    assert ctx.info["dampened_fraction"] > 0
    for k, b in enc.named_buffers():
        assert torch.equal(b, buffers[k])


# --- SCRUB ----------------------------------------------------------------------------------

def test_distill_kl_is_teacher_first_and_zero_on_equal_logits():
    s, t = torch.randn(5, C), torch.randn(5, C)
    expected = F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean") * 16
    assert distill_kl(s, t, 4.0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distill_kl(t, t, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    sim = similarity_logits(torch.randn(6, 3), 0.1)
    assert sim.shape == (6, 5)
    assert sim.abs().max() <= 10.0 + 1e-4  # cosines / 0.1, self-similarity (10) removed


@pytest.mark.parametrize("make", [supervised, simclr])
def test_scrub_first_max_step_increases_kl_to_teacher_on_forget(make):
    enc = make()
    teacher = frozen(enc)
    with torch.no_grad():  # a student that already differs a little (as after a min pass)
        for p in enc.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    ctx = context(enc, Scrub.needs, original=teacher)
    method = Scrub()
    opt = ctx.optimizer("sgd", lr=0.05, momentum=method.momentum, weight_decay=method.weight_decay)
    batch = Batch(ctx.forget.x, ctx.forget.y, ctx.forget.idx)

    def kl_now() -> float:
        state = ctx.generator.get_state()
        ctx.generator.manual_seed(123)  # the same views before and after the step
        with torch.no_grad():
            kl, _ = method.terms(ctx, batch, task=False)
        ctx.generator.set_state(state)
        return kl.item()

    k0 = kl_now()
    ctx.generator.manual_seed(123)
    assert float(method.max_step(ctx, opt, batch)) == pytest.approx(k0, rel=1e-5)
    k1 = kl_now()
    assert k0 > 0 and k1 > k0


@pytest.mark.parametrize("make", [supervised, simclr])
def test_scrub_runs_end_to_end(make):
    enc = make()
    before = params_of(enc)
    ctx = context(enc, Scrub.needs, original=frozen(enc))
    Scrub(epochs=2, max_steps=1, forget_batch_size=8, retain_batch_size=16).unlearn(ctx)
    after = params_of(enc)
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


# --- boundary shrink ------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_boundary_shrink_targets_are_never_the_true_label(eps):
    model = frozen(supervised())
    data = views(n_forget=200, n_retain=0)["forget"]
    v = model.prepare(data.x)
    targets, hit = nearest_wrong_labels(model, v, data.y, eps)
    assert (targets != data.y).all()
    pred = model.logits(v).argmax(1)
    if eps == 0.0:  # no attack: a wrong prediction is kept, a right one goes to the runner-up
        runner_up = model.logits(v).topk(2, dim=1).indices[:, 1]
        assert torch.equal(targets, torch.where(pred != data.y, pred, runner_up))
    else:
        assert hit.float().mean() >= (pred != data.y).float().mean()


def test_boundary_shrink_runs_end_to_end():
    enc = supervised()
    before = params_of(enc)
    ctx = context(enc, BoundaryShrink.needs, original=frozen(enc))
    BoundaryShrink(epochs=2, lr=0.05).unlearn(ctx)
    assert any(not torch.equal(a, b) for a, b in zip(params_of(enc), before))
    assert 0.0 <= ctx.info["attack_success"] <= 1.0
