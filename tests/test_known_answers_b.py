"""Known answers for the standard baselines' update rules (random labels, SalUn, SCRUB, SSD,
boundary shrink) and for the un-augmented objective API.

Each test runs the method on a linear classifier (logits = W v + b on the flattened,
prepared image), computes the expected weights in float64 from the method's equations
(closed-form softmax-CE and KL gradients, SGD with momentum and weight decay), written
here independently of the method's code, and shows that a deliberate perturbation of the
equation (a missing T^2, the reference's true-label fallback, ...) fails the comparison.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import Batch, DataInfo, DataView, UnlearnContext
from bench.config import TrainBudget
from bench.encoders.simclr import SimCLR
from bench.encoders.supervised import Supervised
from bench.hparams import HP, HParamError, check, params, search_space
from methods.boundary_shrink import BoundaryShrink, fgsm, nearest_wrong_labels
from methods.random_labels import RandomLabels
from methods.salun import SalUn, saliency_masks
from methods.scrub import Scrub, distill_kl, similarity_logits
from methods.ssd import SSD

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
SHAPE = (3, 4, 4)
D = 3 * 4 * 4


class Flat(nn.Module):
    out_dim = D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def info(c: int) -> DataInfo:
    return DataInfo(c, tuple("abcdef"[:c]), SHAPE, MEAN, STD)


def linear(c: int, seed: int = 0, scale: float = 0.3) -> Supervised:
    """The real supervised encoder on a parameter-free backbone: logits = W flat(v) + b."""
    torch.manual_seed(seed)
    enc = Supervised(Flat(), info(c))
    with torch.no_grad():
        enc.head.weight.normal_(0, scale)
        enc.head.bias.normal_(0, scale)
    return enc


def data(c: int, n_forget: int, n_retain: int, seed: int = 0) -> dict[str, DataView]:
    g = torch.Generator().manual_seed(seed)
    n = n_forget + n_retain
    x = torch.randint(0, 256, (n, *SHAPE), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % c
    full = DataView(x, y, torch.arange(n), "train")
    return {"forget": full.subset(torch.arange(n_forget), "forget"),
            "retain": full.subset(torch.arange(n_forget, n), "retain")}


def context(enc, views, needs, original=None, batch_size: int = 4) -> UnlearnContext:
    enc.train()
    return UnlearnContext(
        enc, needs=needs, data=views, original=original, device=torch.device("cpu"), precision="fp32",
        seed=0, budget=TrainBudget(epochs=1, batch_size=batch_size), time_limit_s=600.0,
        num_classes=enc.info.num_classes,
    )


# --- the equations, in float64 ----------------------------------------------------------------

def plain(x: torch.Tensor) -> torch.Tensor:
    """The prepared image, flattened: (x / 255 - mean) / std per channel."""
    m = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    return ((x.double() / 255 - m) / s).flatten(1)


def weights(enc: Supervised) -> list[torch.Tensor]:
    return [enc.head.weight.detach().double().clone(), enc.head.bias.detach().double().clone()]


def onehot(y: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(y, c).double()


def softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.max(1, keepdim=True).values)
    return e / e.sum(1, keepdim=True)


def logit_grad(theta, X, G):
    """d loss / d (W, b) for a loss whose gradient w.r.t. the logits is G (rows of X)."""
    return [G.T @ X, G.sum(0)]


def ce_dlogits(theta, X, y, c):
    """Gradient of mean CE w.r.t. the logits: (softmax(z) - onehot(y)) / n."""
    z = X @ theta[0].T + theta[1]
    return (softmax(z) - onehot(y, c)) / len(X)


class SGD:
    """torch's SGD: d = g + wd p; buf = d (first step) else momentum buf + d; p -= lr buf."""

    def __init__(self, lr: float, momentum: float, wd: float):
        self.lr, self.momentum, self.wd, self.buf = lr, momentum, wd, None

    def step(self, theta, grads):
        d = [g + self.wd * p for p, g in zip(theta, grads)]
        self.buf = d if self.buf is None else [self.momentum * b + di for b, di in zip(self.buf, d)]
        return [p - self.lr * b for p, b in zip(theta, self.buf)]


def close(actual: list[torch.Tensor], expected: list[torch.Tensor], tol: float = 1e-5) -> bool:
    return all(torch.allclose(a.double(), e, rtol=tol, atol=tol) for a, e in zip(actual, expected))


# --- random labels ------------------------------------------------------------------------------

def rl_expected(theta, views, epochs, lr, schedule, relabel=True, momentum=0.9, wd=5e-4, mask=None, theta0=None):
    """Two classes: the only wrong label is 1 - y, so wrong-only random labels are known."""
    f, r = views["forget"], views["retain"]
    opt = SGD(lr, momentum, wd)

    def step(theta, X, y):
        grads = logit_grad(theta, X, ce_dlogits(theta, X, y, 2))
        if mask is not None:
            grads = [g * m for g, m in zip(grads, mask)]
        theta = opt.step(theta, grads)
        if mask is not None:  # masked-out weights back to their original values
            theta = [torch.where(m.bool(), p, p0) for p, m, p0 in zip(theta, mask, theta0)]
        return theta

    yf = 1 - f.y if relabel else f.y
    for _ in range(epochs):
        if schedule == "mixed":
            theta = step(theta, torch.cat([plain(f.x), plain(r.x)]), torch.cat([yf, r.y]))
        else:
            theta = step(theta, plain(f.x), yf)
            theta = step(theta, plain(r.x), r.y)
    return theta


@pytest.mark.parametrize("schedule", ["sequential", "mixed"])
def test_random_labels_update_is_sgd_on_relabelled_ce(schedule):
    views = data(2, 6, 10)
    enc = linear(2)
    theta0 = weights(enc)
    RandomLabels(epochs=2, lr=0.5, schedule=schedule, augment=False).unlearn(context(enc, views, RandomLabels.needs))
    assert close(weights(enc), rl_expected(theta0, views, 2, 0.5, schedule))
    # perturbations: the true labels on D_f; no momentum; the other schedule
    assert not close(weights(enc), rl_expected(theta0, views, 2, 0.5, schedule, relabel=False))
    assert not close(weights(enc), rl_expected(theta0, views, 2, 0.5, schedule, momentum=0.0))
    other = "mixed" if schedule == "sequential" else "sequential"
    assert not close(weights(enc), rl_expected(theta0, views, 2, 0.5, other))


def test_random_labels_trains_on_augmented_views_by_default():
    views = data(2, 6, 10)
    enc = linear(2)
    theta0 = weights(enc)
    RandomLabels(epochs=1, lr=0.5).unlearn(context(enc, views, RandomLabels.needs))
    assert not close(weights(enc), rl_expected(theta0, views, 1, 0.5, "sequential"))  # not the plain images


# --- SalUn ----------------------------------------------------------------------------------

def salun_mask(theta, f, fraction):
    """Top ``fraction`` of |grad of mean(-CE) on D_f| (one batch), ranked over all weights."""
    g = [-t for t in logit_grad(theta, plain(f.x), ce_dlogits(theta, plain(f.x), f.y, 2))]
    scores = torch.cat([t.abs().flatten() for t in g])
    keep = torch.zeros_like(scores)
    keep[scores.argsort(descending=True)[: int(fraction * len(scores))]] = 1
    return [m.view_as(t) for m, t in zip(keep.split([t.numel() for t in theta]), theta)]


def test_salun_mask_and_masked_update_known_answer():
    views = data(2, 6, 10)
    f = views["forget"]
    enc = linear(2)
    theta0 = weights(enc)
    ctx = context(copy.deepcopy(enc), views, SalUn.needs)
    # two classes: the gradients of W's two rows (and of b's two entries) are equal and opposite,
    # so ties come in pairs; 0.6 of 98 weights = 58 keeps whole pairs
    masks = [m.double() for m in saliency_masks(ctx, ctx.encoder.trainable_parameters(), 0.6, 256, augment=False)]
    expected_mask = salun_mask(theta0, f, 0.6)
    assert all(torch.equal(m, e) for m, e in zip(masks, expected_mask))
    # perturbation: ranking within each tensor instead of globally gives another mask
    grads = logit_grad(theta0, plain(f.x), ce_dlogits(theta0, plain(f.x), f.y, 2))
    per_tensor = []
    for t in grads:
        keep = torch.zeros(t.numel(), dtype=torch.float64)
        keep[t.abs().flatten().argsort(descending=True)[: int(0.6 * t.numel())]] = 1
        per_tensor.append(keep.view_as(t))
    assert not all(torch.equal(m, e) for m, e in zip(masks, per_tensor))

    SalUn(epochs=2, lr=0.5, fraction=0.6, augment=False).unlearn(context(enc, views, SalUn.needs))
    assert close(weights(enc), rl_expected(theta0, views, 2, 0.5, "sequential", mask=expected_mask, theta0=theta0))
    # perturbation: the reference before a6e89fd (gradients masked, weights never reset)
    assert not close(weights(enc), _grad_masked_only(theta0, views, expected_mask))


def _grad_masked_only(theta, views, mask):
    f, r = views["forget"], views["retain"]
    opt = SGD(0.5, 0.9, 5e-4)
    for _ in range(2):
        for X, y in ((plain(f.x), 1 - f.y), (plain(r.x), r.y)):
            grads = [g * m for g, m in zip(logit_grad(theta, X, ce_dlogits(theta, X, y, 2)), mask)]
            theta = opt.step(theta, grads)
    return theta


# --- SCRUB ----------------------------------------------------------------------------------

def test_distill_kl_known_answer():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    t = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    T = 2.0
    ps, pt = softmax(s.double() / T), softmax(t.double() / T)
    expected = T**2 * (pt * (pt.log() - ps.log())).sum(1).mean()
    assert distill_kl(s, t, T).item() == pytest.approx(expected.item(), rel=1e-6)
    assert distill_kl(t, s, T).item() != pytest.approx(expected.item(), rel=1e-3)  # student-first: another value


def test_similarity_logits_known_answer():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    r = 2**-0.5
    expected = torch.tensor([[0.0, r], [0.0, r], [r, r]]) / 0.1  # row i: cosines to the other rows
    assert torch.allclose(similarity_logits(z, 0.1), expected, atol=1e-6)
    assert not torch.allclose(similarity_logits(z, 0.2), expected, atol=1e-3)


def scrub_expected(theta, teacher, views, T, gamma, alpha, lr, t_squared=True):
    """max pass (-KL on D_f), then two min passes (gamma CE + alpha KL on D_r), one batch each.
    d(T^2 KL(p_t || p_s)) / d s = T (p_s - p_t) / n."""
    c = 3
    scale = T if t_squared else 1 / T
    opt = SGD(lr, 0.9, 5e-4)

    def kl_dlogits(theta, X):
        ps = softmax((X @ theta[0].T + theta[1]) / T)
        pt = softmax((X @ teacher[0].T + teacher[1]) / T)
        return scale * (ps - pt) / len(X)

    Xf, Xr, yr = plain(views["forget"].x), plain(views["retain"].x), views["retain"].y
    theta = opt.step(theta, logit_grad(theta, Xf, -kl_dlogits(theta, Xf)))
    for _ in range(2):
        G = gamma * ce_dlogits(theta, Xr, yr, c) + alpha * kl_dlogits(theta, Xr)
        theta = opt.step(theta, logit_grad(theta, Xr, G))
    return theta


def test_scrub_updates_known_answer():
    views = data(3, 6, 9)
    enc, teacher = linear(3, seed=0), linear(3, seed=1).eval().requires_grad_(False)
    theta0, theta_t = weights(enc), weights(teacher)
    method = Scrub(epochs=2, max_steps=1, lr=0.5, alpha=0.3)
    assert not method.augment and method.forget_batch_size == 512 and method.retain_batch_size == 256
    method.unlearn(context(enc, views, Scrub.needs, original=teacher))
    assert close(weights(enc), scrub_expected(theta0, theta_t, views, 4.0, 0.99, 0.3, 0.5))
    # perturbations: the KL without its T^2 factor; gamma and alpha swapped
    assert not close(weights(enc), scrub_expected(theta0, theta_t, views, 4.0, 0.99, 0.3, 0.5, t_squared=False))
    assert not close(weights(enc), scrub_expected(theta0, theta_t, views, 4.0, 0.3, 0.99, 0.5))


# --- SSD ------------------------------------------------------------------------------------

def fisher(theta, X, y, batch_size):
    """Mean over in-order batches of (grad of the batch-mean CE)^2."""
    sq = [torch.zeros_like(t) for t in theta]
    starts = list(range(0, len(X), batch_size))
    for s in starts:
        g = logit_grad(theta, X[s:s + batch_size], ce_dlogits(theta, X[s:s + batch_size], y[s:s + batch_size], 3))
        sq = [a + gi**2 for a, gi in zip(sq, g)]
    return [a / len(starts) for a in sq]


def ssd_expected(theta, views, alpha, lam, batch_size, per_sample=False):
    f, r = views["forget"], views["retain"]
    Xf, Xd = plain(f.x), torch.cat([plain(r.x), plain(f.x)])
    yd = torch.cat([r.y, f.y])
    bs = 1 if per_sample else batch_size
    i_f, i_d = fisher(theta, Xf, f.y, bs), fisher(theta, Xd, yd, bs)
    out = []
    for p, d, fi in zip(theta, i_d, i_f):
        out.append(torch.where(fi > alpha * d, p * torch.clamp(lam * d / fi, max=1.0), p))
    return out


def test_ssd_known_answer_on_plain_images():
    views = data(3, 4, 8)
    enc = linear(3)
    theta0 = weights(enc)
    ctx = context(enc, views, SSD.needs)
    SSD(alpha=1.0, lam=0.5, batch_size=4).unlearn(ctx)
    expected = ssd_expected(theta0, views, 1.0, 0.5, 4)
    assert ctx.info["dampened"] > 0 and ctx.info["importance_views"] == "prepared"
    assert close(weights(enc), expected)
    # perturbations: per-sample squared gradients; importances on augmented views
    assert not close(weights(enc), ssd_expected(theta0, views, 1.0, 0.5, 4, per_sample=True))
    aug = linear(3)
    SSD(alpha=1.0, lam=0.5, batch_size=4, augment=True).unlearn(context(aug, views, SSD.needs))
    assert not close(weights(aug), expected)


# --- boundary shrink ------------------------------------------------------------------------

def fgsm_view(theta, x, y, eps, pixel_units=True):
    """One FGSM step of eps in [0, 1] pixels (sign of the CE input gradient), clamped, rounded to
    1/255, re-normalised (flattened). ``pixel_units=False``: eps added to the normalised view."""
    X = plain(x)
    z = X @ theta[0].T + theta[1]
    grad_x = (softmax(z) - onehot(y, 3)) @ theta[0]  # per row, up to the positive 1/n
    if not pixel_units:
        return X + eps * grad_x.sign()
    m = torch.tensor(MEAN, dtype=torch.float64).repeat_interleave(16)
    s = torch.tensor(STD, dtype=torch.float64).repeat_interleave(16)
    pixels = (X * s + m + eps * grad_x.sign()).clamp(0, 1)
    return (torch.round(pixels * 255) / 255 - m) / s


def fgsm_targets(theta, x, y, eps, fallback_wrong=True):
    """Target = the adversarial argmax, or its best wrong class when that is the true label."""
    adv = fgsm_view(theta, x, y, eps)
    za = adv @ theta[0].T + theta[1]
    pred = za.argmax(1)
    wrong = za.scatter(1, y[:, None], float("-inf")).argmax(1)
    hit = pred != y
    return (torch.where(hit, pred, wrong) if fallback_wrong else torch.where(hit, pred, y)), hit


def test_boundary_shrink_known_answer():
    views = data(3, 12, 0)
    f = views["forget"]
    original = linear(3, seed=2, scale=0.05).eval().requires_grad_(False)
    theta_o = weights(original)
    adv = fgsm(original, original.prepare(f.x), f.y, 0.03).flatten(1)
    assert torch.allclose(adv.double(), fgsm_view(theta_o, f.x, f.y, 0.03), atol=1e-5)
    # perturbations: the step in normalised units; a step of 0.035
    assert not torch.allclose(adv.double(), fgsm_view(theta_o, f.x, f.y, 0.03, pixel_units=False), atol=1e-3)
    assert not torch.allclose(adv.double(), fgsm_view(theta_o, f.x, f.y, 0.035), atol=1e-3)
    targets, hit = fgsm_targets(theta_o, f.x, f.y, 0.03)
    assert hit.any() and not hit.all()  # both branches of the target rule are exercised
    got, got_hit = nearest_wrong_labels(original, original.prepare(f.x), f.y, 0.03)
    assert torch.equal(got, targets) and torch.equal(got_hit, hit)
    reference_fallback, _ = fgsm_targets(theta_o, f.x, f.y, 0.03, fallback_wrong=False)
    assert not torch.equal(got, reference_fallback)  # perturbation: the reference's true-label fallback

    enc = copy.deepcopy(original).requires_grad_(True)
    BoundaryShrink(epochs=2, lr=0.5, eps=0.03).unlearn(context(enc, views, BoundaryShrink.needs, original=original))
    opt, theta = SGD(0.5, 0.9, 0.0), theta_o
    for _ in range(2):  # one batch of 12 (< 64) per pass; targets from the fixed original
        theta = opt.step(theta, logit_grad(theta, plain(f.x), ce_dlogits(theta, plain(f.x), targets, 3)))
    assert close(weights(enc), theta)
    opt, bad = SGD(0.5, 0.9, 0.0), theta_o
    for _ in range(2):  # perturbation: trained on the reference's fallback targets
        bad = opt.step(bad, logit_grad(bad, plain(f.x), ce_dlogits(bad, plain(f.x), reference_fallback, 3)))
    assert not close(weights(enc), bad)


# --- the un-augmented objective API -----------------------------------------------------------

def test_supervised_objective_without_augmentation_is_ce_on_the_prepared_image():
    enc = linear(3)
    enc.augmenter = type(enc.augmenter)(type(enc.augmenter.cfg).supervised(4), list(MEAN), list(STD))
    b = Batch(data(3, 6, 0)["forget"].x, torch.arange(6) % 3, torch.arange(6))
    g = torch.Generator().manual_seed(0)
    plain_loss = enc.objective(b, g, augment=False)
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())  # no draw consumed
    theta = weights(enc)
    z = plain(b.x) @ theta[0].T + theta[1]
    expected = -(softmax(z).log() * onehot(b.y, 3)).sum(1)
    assert torch.allclose(plain_loss.double(), expected, atol=1e-5)
    assert not torch.allclose(enc.objective(b, g).double(), expected, atol=1e-3)  # augmented views differ
    assert "one_view" in enc.capabilities


def test_two_view_objectives_keep_their_augmentation():
    torch.manual_seed(0)
    enc = SimCLR(Flat(), info(3), proj_dim=4)
    assert "one_view" not in enc.capabilities
    views = data(3, 8, 0)
    ctx = context(enc, views, ("forget",))
    b = Batch(views["forget"].x, views["forget"].y, views["forget"].idx)
    ctx.generator.manual_seed(5)
    asked_plain = ctx.objective(b, augment=False)
    ctx.generator.manual_seed(5)
    assert torch.equal(asked_plain, ctx.objective(b))
    # the prepared pair would be another loss
    v = enc.prepare(b.x)
    assert not torch.allclose(asked_plain, enc.pair_loss(v, v, b))


def test_clip_objective_takes_one_plain_view():
    from bench.encoders.base import build_encoder

    enc = build_encoder("clip", "convnet-s", DataInfo(3, ("a", "b", "c"), (3, 16, 16), MEAN, STD))
    assert "one_view" in enc.capabilities
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    b = Batch(x, torch.arange(4) % 3, torch.arange(4))
    enc.eval()
    with torch.no_grad():
        got = enc.objective(b, torch.Generator().manual_seed(1), augment=False)
        expected = enc.image_text_loss(enc.prepare(x), enc.captions(b, torch.Generator().manual_seed(1)))
        augmented = enc.objective(b, torch.Generator().manual_seed(1))
    assert torch.equal(got, expected) and not torch.equal(got, augmented)


# --- hyperparameter declarations ----------------------------------------------------------------

@pytest.mark.parametrize("cls", [RandomLabels, SalUn, Scrub, SSD, BoundaryShrink])
def test_every_hyperparameter_is_declared_with_a_range_or_a_doc(cls):
    declared = params(cls)
    assert declared and all(p.spec != HP() for p in declared.values()), [n for n, p in declared.items()
                                                                          if p.spec == HP()]
    assert check(cls, {n: p.default for n, p in declared.items()}, cls.name)  # defaults are valid
    space = search_space(cls)
    assert {"lr"} <= set(space) or {"alpha", "lam"} <= set(space)
    for name, s in space.items():  # every tuning bound is a valid value
        check(cls, {name: s.low if s.kind != "categorical" else s.choices[0]}, cls.name)


@pytest.mark.parametrize("cls,bad", [
    (RandomLabels, {"lr": 0.0}), (RandomLabels, {"schedule": "cifar100"}), (SalUn, {"fraction": 1.5}),
    (Scrub, {"temperature": 0.0}), (SSD, {"alpha": -1.0}), (BoundaryShrink, {"eps": 0.0}),
    (BoundaryShrink, {"epochs": 0}),
])
def test_out_of_range_hyperparameters_are_refused(cls, bad):
    with pytest.raises(HParamError):
        check(cls, bad, cls.name)
