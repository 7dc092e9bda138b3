"""The papers' methods: each test checks the property that defines the method, on tiny models."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import Batch, DataInfo, DataView, Encoder, UnlearnContext
from bench.config import TrainBudget
from bench.encoders.simclr import SimCLR
from bench.registry import backbones
from methods.alignment_calibration import (
    AlignmentCalibration,
    ForgetLookup,
    forget_partners,
    weight_rows,
)
from methods.contrastive_unlearning import ContrastiveUnlearning, contrastive_unlearning_loss
from methods.finetune import Finetune
from methods.gradient_penalty import (
    GradientPenalty,
    loss_and_input_grad_norm,
    measure_caps,
    penalised_loss,
)
from methods.l1_sparse import L1Sparse, l1_norm, l1_weight
from methods.neggrad_plus import NegGradPlus

SIZE, C = 8, 3
INFO = DataInfo(C, ("a", "b", "c"), (3, SIZE, SIZE), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared CPU: one thread avoids oversubscription stalls."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- tiny fixtures


class FixedViewSimCLR(SimCLR):
    """SimCLR whose 'augmentation' is plain normalisation: losses are deterministic."""

    augment_preset = "none"


class TinySupervised(Encoder):
    """The supervised encoder's contract: labels + logits + views, ``logits(v)``."""

    capabilities = frozenset({"labels", "logits", "views"})
    augment_preset = "supervised"

    def __init__(self, backbone: nn.Module, info: DataInfo):
        super().__init__(backbone, info)
        self.head = nn.Linear(self.feat_dim, 16)
        self.fc = nn.Linear(self.feat_dim, info.num_classes)

    def project(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(v))

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.prepare(x))

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.logits(v1).float(), batch.y, reduction="none")


def encoder(cls: type[Encoder] = SimCLR, seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    return cls(backbones.get("convnet-s")(in_channels=3, image_size=SIZE), INFO).train()


def view(n: int, start: int, seed: int, name: str, labels: torch.Tensor | None = None) -> DataView:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    y = labels if labels is not None else torch.arange(n) % C
    return DataView(x, y, torch.arange(start, start + n), name)


def data(n_f: int = 16, n_r: int = 32, n_v: int = 16) -> dict[str, DataView]:
    return {
        "forget": view(n_f, 0, 1, "forget"),
        "retain": view(n_r, 1000, 2, "retain"),
        "val": view(n_v, 5000, 3, "val"),
    }


def context(
    enc: Encoder, method, views: dict[str, DataView], batch_size: int = 16, precision: str = "fp32"
) -> UnlearnContext:
    return UnlearnContext(
        enc, needs=type(method).needs, data=views, original=None, device=CPU, precision=precision,
        seed=0, budget=TrainBudget(batch_size=batch_size), time_limit_s=600.0, num_classes=C,
    )


def run(method, enc: Encoder, views: dict[str, DataView], **kw) -> UnlearnContext:
    ctx = context(enc, method, views, **kw)
    torch.manual_seed(0)
    method.unlearn(ctx)
    return ctx


def params(enc: Encoder) -> list[torch.Tensor]:
    return [p.detach().clone() for p in enc.trainable_parameters()]


def same_weights(a: Encoder, b: Encoder) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@torch.no_grad()
def fixed_loss(enc: Encoder, v: DataView) -> torch.Tensor:
    """Per-sample loss of a FixedViewSimCLR on its (deterministic) views, one full batch."""
    x = enc.prepare(v.x)
    return enc.pair_loss(x, x, Batch(v.x, v.y, v.idx))


# --------------------------------------------------------------------------- gradient_penalty


def test_gp_clamp_gives_zero_ascent_gradient_at_the_cap() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (g,) = torch.autograd.grad(penalised_loss(losses, torch.zeros(3), 2.5, 0.0, 0.0), losses)
    torch.testing.assert_close(g, torch.tensor([-1 / 3, -1 / 3, 0.0]))  # capped sample: no push


def test_gp_leaves_weights_alone_once_every_forget_sample_is_past_the_cap() -> None:
    views = {**data(), "forget": view(16, 0, 1, "forget")}
    enc = encoder(FixedViewSimCLR)
    below = float(fixed_loss(enc, views["forget"]).min()) - 1.0
    before = params(enc)
    run(GradientPenalty(epochs=3, lr=1e-2, lam=0.0, c_loss=below, c_grad=0.0), enc, views)
    assert all(torch.equal(a, b) for a, b in zip(before, params(enc)))


def test_gp_raises_forget_loss_toward_but_not_past_the_cap() -> None:
    """The clamp stops the ascent once the last forget sample reaches the cap: every sample
    ends at or above the cap, the weights then sit at a fixed point, and the losses stay far
    below where the same ascent without a cap goes. (Samples share weights and Adam's
    momentum coasts a few steps, so samples capped early still drift up a little.)"""
    views = data()
    start_enc = encoder(FixedViewSimCLR)
    cap = float(fixed_loss(start_enc, views["forget"]).mean()) + 0.3
    ends: dict[str, torch.Tensor] = {}
    capped_enc = copy.deepcopy(start_enc)
    for name, c in (("capped", cap), ("uncapped", math.inf)):
        enc = capped_enc if name == "capped" else copy.deepcopy(start_enc)
        run(GradientPenalty(epochs=15, lr=3e-3, lam=0.0, c_loss=c, c_grad=0.0), enc, views)
        ends[name] = fixed_loss(enc, views["forget"])
    assert float(ends["capped"].min()) >= cap  # raised to the non-member level ...
    assert float(ends["capped"].min()) < float(ends["uncapped"].min()) - 0.3  # ... and no further
    assert float(ends["capped"].mean()) < float(ends["uncapped"].mean()) - 0.25
    frozen = params(capped_enc)
    run(GradientPenalty(epochs=2, lr=3e-3, lam=0.0, c_loss=cap, c_grad=0.0), capped_enc, views)
    assert all(torch.equal(a, b) for a, b in zip(frozen, params(capped_enc)))  # a fixed point


def test_gp_penalty_trains_through_double_backward() -> None:
    enc, views = encoder(), data()
    gp = GradientPenalty()
    ctx = context(enc, gp, views)
    batch = Batch(views["forget"].x, views["forget"].y, views["forget"].idx)
    losses, norms = loss_and_input_grad_norm(ctx, batch, create_graph=True)
    assert norms.requires_grad and bool((norms > 0).all())
    penalty = penalised_loss(losses, norms, -1e9, 0.0, 1.0)  # the ascent term is constant here
    grads = torch.autograd.grad(penalty, enc.trainable_parameters(), allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    _, detached = loss_and_input_grad_norm(ctx, batch, create_graph=False)
    assert not detached.requires_grad  # without create_graph the penalty could not train


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gp_runs_through_batchnorm_and_autocast(precision: str) -> None:
    enc, views = encoder(), data()
    before = params(enc)
    ctx = run(GradientPenalty(epochs=1, lr=1e-3, c_loss=-1e9), enc, views, precision=precision)
    after = params(enc)
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert ctx.info["reconstructed"] is True


def test_gp_caps_come_from_val_without_touching_its_buffers() -> None:
    enc, views = encoder(), data()
    gp = GradientPenalty(epochs=2)
    buffers = {n: b.clone() for n, b in enc.named_buffers()}
    c_loss, c_grad = measure_caps(context(enc, gp, views), views["val"], None)
    assert all(torch.equal(b, buffers[n]) for n, b in enc.named_buffers())
    assert c_loss > 0 and c_grad > 0
    one = run(GradientPenalty(epochs=2), encoder(), views)
    two = run(GradientPenalty(epochs=2, stage="two_sided", mu=0.5), encoder(), views)
    assert len(one.info["caps"]) == 1 and len(two.info["caps"]) == 2  # re-estimated per epoch
    assert one.info["caps"][0] == [round(c_loss, 5), round(c_grad, 5)]


def test_gp_rejects_unknown_stage() -> None:
    with pytest.raises(ValueError, match="stage"):
        GradientPenalty(stage="both")


# --------------------------------------------------------------------------- alignment_calibration


def test_weight_rows_weights_the_right_rows_of_the_2n_ntxent_vector() -> None:
    """Fails on the published bug: SimCLR's NT-Xent rows are [view0; view1], so sample i owns
    rows i and N+i; ``np.repeat(mask, 2)`` (a,a,b,b) would weight rows 2i, 2i+1 instead."""
    enc, views = encoder(), data()
    n = 8
    x = views["forget"].x[:n]
    gen = torch.Generator().manual_seed(0)
    v1, v2 = enc.augment(x, gen), enc.augment(x, gen)
    is_forget = torch.tensor([True, False, False, True, False, True, False, False])
    alpha = 3.0
    with torch.no_grad():
        z = torch.cat([enc.head(enc.backbone(v1)), enc.head(enc.backbone(v2))])  # one forward per view
        rows = enc.criterion(z[:n], z[n:])  # [2N] rows, reduction 'none'
        per_sample = enc.pair_loss(v1, v2, Batch(x, views["forget"].y[:n], views["forget"].idx[:n]))
    w = [alpha if f else 1.0 for f in is_forget.tolist()]
    hand = sum(w[i] * (rows[i] + rows[n + i]) for i in range(n)) / (2 * sum(w))
    torch.testing.assert_close(weight_rows(rows, is_forget, alpha), hand)
    torch.testing.assert_close(weight_rows(per_sample, is_forget, alpha), hand)
    bug_mask = torch.from_numpy(np.repeat(is_forget.numpy(), 2))
    bug_w = torch.where(bug_mask, alpha, 1.0)
    bug = (bug_w * rows).sum() / bug_w.sum()
    assert abs(float(bug - hand)) > 1e-3  # the published weighting gives another number


def test_ac_with_alpha0_beta0_is_finetune_on_the_retain_rows() -> None:
    enc, views = encoder(), data()
    ac = AlignmentCalibration(alpha=0.0, beta=0.0)
    ctx = context(enc, ac, views)
    union = DataView.concat([views["retain"], views["forget"]], "union")
    rows = torch.tensor([0, 1, 2, 33, 3, 40, 4, 5, 36, 6])  # retain and forget rows mixed
    batch = Batch(union.x[rows], union.y[rows], union.idx[rows])
    is_forget = rows >= len(views["retain"])
    gen = torch.Generator().manual_seed(1)
    v1, v2 = enc.augment(batch.x, gen), enc.augment(batch.x, gen)
    with torch.no_grad():
        finetune_rows = enc.pair_loss(v1, v2, batch)[~is_forget].mean()
        ac_loss = ac.loss(ctx, batch, is_forget, (v1, v2, None), 0.1)
        retain_only = Batch(batch.x[~is_forget], batch.y[~is_forget], batch.idx[~is_forget])
        finetune_batch = enc.pair_loss(v1[~is_forget], v2[~is_forget], retain_only).mean()
        ac_retain_only = ac.loss(ctx, retain_only, torch.zeros(7, dtype=torch.bool),
                                 (v1[~is_forget], v2[~is_forget], None), 0.1)
    torch.testing.assert_close(ac_loss, finetune_rows)
    torch.testing.assert_close(ac_retain_only, finetune_batch)


def test_ac_beta_term_is_scaled_by_the_forget_fraction() -> None:
    enc, views = encoder(), data()
    gen = torch.Generator().manual_seed(2)
    f = views["forget"]
    batch = Batch(f.x[:8], f.y[:8], f.idx[:8])
    is_forget = torch.ones(8, dtype=torch.bool)
    v1, v2, v3 = (enc.augment(batch.x, gen) for _ in range(3))
    ctx = context(enc, AlignmentCalibration(), views)
    with torch.no_grad():
        plain = AlignmentCalibration(beta=0.0).loss(ctx, batch, is_forget, (v1, v2, v3), 0.25)
        with_beta = AlignmentCalibration(beta=2.0).loss(ctx, batch, is_forget, (v1, v2, v3), 0.25)
        cos = (enc.embed(v1) * enc.target_embed(v3)).sum(1).mean()
    torch.testing.assert_close(with_beta - plain, 2.0 * 0.25 * cos)


def test_ac_pairs_each_forget_sample_with_another_forget_image() -> None:
    pos = torch.arange(5).repeat(400)
    partners = forget_partners(pos, 5, torch.Generator().manual_seed(0))
    assert bool((partners != pos).all()) and int(partners.min()) == 0 and int(partners.max()) == 4
    assert set(partners[pos == 2].tolist()) == {0, 1, 3, 4}  # every other one, never itself
    enc, views = encoder(FixedViewSimCLR), data()
    ac = AlignmentCalibration()
    ctx = context(enc, ac, views)
    union = DataView.concat([views["retain"], views["forget"]], "union")
    rows = torch.tensor([0, 32, 1, 33, 34])
    batch = Batch(union.x[rows], union.y[rows], union.idx[rows])
    lookup = ForgetLookup(views["forget"])
    is_forget, (v1, v_tilde, _) = ac.triad(ctx, batch, views["forget"], lookup)
    assert is_forget.tolist() == [False, True, False, True, True]
    torch.testing.assert_close(v_tilde[~is_forget], v1[~is_forget])  # retain: t2 of itself
    forget_views = enc.prepare(views["forget"].x)
    for i in torch.nonzero(is_forget).flatten().tolist():
        dist = (forget_views - v_tilde[i]).flatten(1).abs().amax(1)
        match = int(dist.argmin())
        assert float(dist[match]) < 1e-5 and match != int(rows[i]) - 32  # another forget image


def test_ac_runs_and_skips_classifiers() -> None:
    enc, views = encoder(), data()
    before = params(enc)
    run(AlignmentCalibration(epochs=1, beta=1.0), enc, views)
    assert any(not torch.equal(a, b) for a, b in zip(before, params(enc)))
    assert AlignmentCalibration.unsupported_reason(TinySupervised) is not None
    assert AlignmentCalibration.unsupported_reason(SimCLR) is None


# --------------------------------------------------------------------------- contrastive_unlearning


def _cu_by_hand(z_u, z_r, y_u, y_r, tau):
    total, rows = 0.0, 0
    for i in range(len(z_u)):
        s = [float(z_u[i] @ z_r[j]) / tau for j in range(len(z_r))]
        m = max(s)
        s = [v - m for v in s]
        pos = [j for j in range(len(z_r)) if y_r[j] != y_u[i]]
        neg = [j for j in range(len(z_r)) if y_r[j] == y_u[i]]
        log_n = math.log(sum(math.exp(s[k]) for k in neg)) if neg else 0.0
        total += -sum(s[j] - log_n for j in pos) / len(pos)
        rows += 1
    return total / rows


def test_cu_loss_matches_a_hand_computation() -> None:
    g = torch.Generator().manual_seed(0)
    z_u = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    z_r = F.normalize(torch.randn(5, 4, generator=g), dim=1)
    y_u = torch.tensor([0, 1, 2])  # class 2 has no same-class retain sample: N(i) empty
    y_r = torch.tensor([0, 0, 1, 1, 0])
    same = y_u[:, None] == y_r[None, :]
    got = contrastive_unlearning_loss(z_u, z_r, ~same, same, 0.7)
    hand = _cu_by_hand(z_u, z_r, y_u.tolist(), y_r.tolist(), 0.7)
    assert math.isclose(float(got), hand, rel_tol=1e-5)


@torch.no_grad()
def _class_similarities(enc: Encoder, f: DataView, r: DataView) -> tuple[float, float]:
    """Mean cosine of forget to same-class and to other-class retain embeddings."""
    z = enc.embed(enc.prepare(torch.cat([f.x, r.x])))  # train-mode BN: one shared batch
    s = z[: len(f)] @ z[len(f) :].T
    same = f.y[:, None] == r.y[None, :]
    return float(s[same].mean()), float(s[~same].mean())


class FixedViewSupervised(TinySupervised):
    augment_preset = "none"


def test_cu_pushes_forget_embeddings_away_from_same_class_retain_ones() -> None:
    """With the paper's defaults (lr 1e-3, 4 retain batches per forget batch), one epoch."""
    views = data(n_f=8, n_r=32)
    enc = encoder(FixedViewSupervised)
    same_before, other_before = _class_similarities(enc, views["forget"], views["retain"])
    ctx = run(ContrastiveUnlearning(epochs=1, stop_rule=False), enc, views)
    same_after, other_after = _class_similarities(enc, views["forget"], views["retain"])
    assert ctx.info["variant"] == "supervised"
    assert same_after < same_before - 0.2  # pushed away from N(i)
    assert other_after > other_before  # pulled toward P(i)


@torch.no_grad()
def _forget_view_alignment(enc: Encoder, f: DataView) -> float:
    gen = torch.Generator().manual_seed(7)
    a, b = enc.augment(f.x, gen), enc.augment(f.x, gen)
    z = enc.embed(torch.cat([a, b]))
    return float((z[: len(f)] * z[len(f) :]).sum(1).mean())


class MildSimCLR(SimCLR):
    """Crop + flip views only, so two views of one random image are related at init."""

    augment_preset = "supervised"


def test_cu_self_supervised_variant_pushes_forget_samples_from_their_own_views() -> None:
    """Against the same run without L_UL (lambda_UL 0: only the retain objective, which by
    itself raises every sample's view alignment), the forget views end far apart."""
    views = data(n_f=8, n_r=32)
    enc, control = encoder(MildSimCLR), encoder(MildSimCLR)
    before = _forget_view_alignment(enc, views["forget"])
    ctx = run(ContrastiveUnlearning(epochs=3, lr=0.01), enc, views)
    run(ContrastiveUnlearning(epochs=3, lr=0.01, lambda_ul=0.0), control, views)
    assert ctx.info["variant"] == "self-supervised" and ctx.info["mode"] == "sample"
    after = _forget_view_alignment(enc, views["forget"])
    assert after < before and after < _forget_view_alignment(control, views["forget"]) - 0.2


def test_cu_stop_rules() -> None:
    views = data(n_f=8, n_r=32)
    sample = {**views, "val": views["forget"]}  # acc(D_f) == acc(D_v): stops after epoch 1
    ctx = run(ContrastiveUnlearning(epochs=3), encoder(TinySupervised), sample)
    assert ctx.info["mode"] == "sample" and ctx.info["stopped"] == "stop rule after epoch 1"
    ctx = run(ContrastiveUnlearning(epochs=2, stop_rule=False), encoder(TinySupervised), sample)
    assert "stopped" not in ctx.info
    forget = view(8, 0, 1, "forget", labels=torch.zeros(8, dtype=torch.long))
    retain = view(32, 1000, 2, "retain", labels=1 + torch.arange(32) % 2)
    enc = encoder(TinySupervised)
    with torch.no_grad():
        enc.fc.bias[0] = -100.0  # class 0 is never predicted: its accuracy is 0 <= 1/C
    ctx = run(ContrastiveUnlearning(epochs=3), enc, {**views, "forget": forget, "retain": retain})
    assert ctx.info["mode"] == "class" and ctx.info["stopped"] == "stop rule after epoch 1"


# --------------------------------------------------------------------------- neggrad_plus, l1


def test_neggrad_plus_with_alpha_1_is_finetune() -> None:
    views = data()
    a, b = encoder(), encoder()
    run(Finetune(epochs=1, lr=0.01), a, views)
    run(NegGradPlus(epochs=1, lr=0.01, alpha=1.0), b, views)
    assert same_weights(a, b)
    c = encoder()
    ctx = run(NegGradPlus(epochs=1, lr=0.01), c, views)
    assert ctx.info["alpha"] == pytest.approx(32 / 48)  # MUC's per-sample weighting
    assert not same_weights(a, c)


def test_neggrad_plus_ascends_the_forget_loss() -> None:
    views = data()
    ft, ng = encoder(FixedViewSimCLR), encoder(FixedViewSimCLR)
    run(Finetune(epochs=3, lr=0.01), ft, views)
    run(NegGradPlus(epochs=3, lr=0.01, alpha=0.5), ng, views)
    forget = views["forget"]
    assert float(fixed_loss(ng, forget).mean()) > float(fixed_loss(ft, forget).mean())


def test_l1_weight_decays_linearly_to_zero() -> None:
    w = [l1_weight(t, 5, 1e-3) for t in range(5)]
    assert w[0] == 1e-3 and w[-1] == 0.0
    assert np.allclose(np.diff(w), -2.5e-4)
    assert l1_weight(0, 1, 1e-3) == 0.0


def test_l1_sparse_with_lambda_0_is_finetune_and_lambda_shrinks_the_norm() -> None:
    views = data()
    a, b, c = encoder(), encoder(), encoder()
    run(Finetune(epochs=1, lr=0.01), a, views)
    run(L1Sparse(epochs=1, lr=0.01, lam=0.0), b, views)
    assert same_weights(a, b)
    ctx = run(L1Sparse(epochs=1, lr=0.01, lam=1e-2), c, views)
    assert ctx.info["l1_norm_end"] < float(l1_norm(a.trainable_parameters()).detach()) - 1.0


# --------------------------------------------------------------------------- the `ls methods` listing


def test_ls_methods_shows_description_source_defaults_and_space_never_a_signature() -> None:
    from bench.driver import list_components
    from bench.hparams import search_space
    from bench.registry import methods

    out = list_components("methods")
    blocks = {b.split(":", 1)[0]: b for b in out.split("\n\n")}
    assert set(blocks) == set(methods.names())
    for name in methods.names():
        cls, block = methods.get(name), blocks[name]
        assert f"{cls.__name__}(" not in block  # no dataclass auto-docstring
        assert "source:" in block and "defaults:" in block and "search space:" in block
        for field, space in search_space(cls).items():
            assert f"{field} {space}" in " ".join(block.split())
    assert "lr log-uniform [0.003, 0.03]" in blocks["finetune"] and "weight_decay=0.0005" in blocks["finetune"]
    assert "none (runs at its defaults)" in blocks["retrain"]
    head = blocks["finetune"].splitlines()[0]
    assert head == "finetune: the encoder's own objective on D_r (forgetting by interference)"
