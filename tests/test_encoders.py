"""Encoder zoo: per-sample losses agree with the frameworks' batch losses, momentum targets
move by lightly's formula, CLIP trains offline, and every encoder takes a training step."""

from __future__ import annotations

import copy

import pytest
import torch
from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss
from lightly.utils.scheduler import cosine_schedule

from bench.data import Batch
from bench.encoders.base import DataInfo, build_encoder
from bench.registry import encoders

MINE = ("moco_v2", "byol", "supervised", "clip", "barlow_twins", "vicreg")
# Small heads and bank so the whole file stays fast on a shared CPU.
PARAMS: dict[str, dict] = {
    "moco_v2": {"memory_bank": 32},
    "byol": {"hidden_dim": 64, "proj_dim": 32},
    "supervised": {},
    "clip": {},
    "barlow_twins": {"hidden_dim": 64, "proj_dim": 64},
    "vicreg": {"hidden_dim": 64, "proj_dim": 64},
}


def _info(size: int = 16) -> DataInfo:
    return DataInfo(10, tuple(str(c) for c in range(10)), (3, size, size), (0.5,) * 3, (0.25,) * 3)


def _batch(n: int = 8, size: int = 16, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return Batch(x, torch.arange(n) % 10, torch.arange(n))


def _build(name: str, backbone: str = "convnet-s", size: int = 16, **extra):
    torch.manual_seed(0)
    return build_encoder(name, backbone, _info(size), {**PARAMS[name], **extra})


def _views(enc, batch: Batch, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return enc.augment(batch.x, g), enc.augment(batch.x, g)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return (a - b).abs().max().item() <= tol * (1 + b.abs().max().item())


def test_all_registered():
    assert set(MINE) <= set(encoders.names())


# --- per-sample loss == framework batch loss ---------------------------------------------


def test_moco_per_sample_matches_ntxent_with_bank():
    enc, batch = _build("moco_v2"), _batch()
    v1, v2 = _views(enc, batch)
    ref = NTXentLoss(temperature=0.1, memory_bank_size=(32, 128))
    ref.memory_bank.bank.copy_(enc.criterion.memory_bank.bank)
    with torch.no_grad():
        q, k = enc.head(enc.backbone(v1)), enc.head_m(enc.backbone_m(v2))
        expected = ref(q, k)
    per = enc.pair_loss(v1, v2, batch)
    assert per.shape == (8,)
    assert _close(per.mean(), expected)
    assert int(enc.criterion.memory_bank.bank_ptr) == 0  # keys are held until the step ends
    enc.on_step_end()
    assert int(enc.criterion.memory_bank.bank_ptr) == 8  # keys queued in training


def test_moco_symmetric_is_both_directions_against_the_same_queue():
    enc, batch = _build("moco_v2", symmetric=True), _batch()
    v1, v2 = _views(enc, batch)
    ref = NTXentLoss(temperature=0.1, memory_bank_size=(32, 128))
    bank = enc.criterion.memory_bank.bank.clone()
    with torch.no_grad():
        q1, q2 = enc.head(enc.backbone(v1)), enc.head(enc.backbone(v2))
        k1, k2 = enc.head_m(enc.backbone_m(v1)), enc.head_m(enc.backbone_m(v2))
        halves = []
        for q, k in ((q1, k2), (q2, k1)):
            ref.memory_bank.bank.copy_(bank)  # each direction sees the pre-step queue
            halves.append(ref(q, k))
    per = enc.pair_loss(v1, v2, batch)
    assert per.shape == (8,)
    assert _close(per.mean(), 0.5 * (halves[0] + halves[1]))
    enc.on_step_end()
    assert int(enc.criterion.memory_bank.bank_ptr) == 16  # both views' keys queued


def test_moco_bank_frozen_under_no_grad_and_persistent():
    enc, batch = _build("moco_v2"), _batch()
    enc.objective(batch, torch.Generator().manual_seed(0)).mean().backward()
    enc.on_step_end()  # fills 8 slots
    enc.eval()
    bank = enc.criterion.memory_bank.bank.clone()
    with torch.no_grad():
        a = enc.objective(batch, torch.Generator().manual_seed(3))
    assert torch.equal(enc.criterion.memory_bank.bank, bank)
    assert "criterion.memory_bank.bank" in enc.state_dict()
    twin = _build("moco_v2")
    twin.load_state_dict(enc.state_dict())
    twin.eval()
    with torch.no_grad():
        b = twin.objective(batch, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # a cached copy scores against the same negatives


def test_byol_per_sample_matches_negative_cosine():
    enc, batch = _build("byol"), _batch()
    v1, v2 = _views(enc, batch)
    per = enc.pair_loss(v1, v2, batch)
    with torch.no_grad():
        p = enc.predictor(enc.head(enc.backbone(torch.cat([v1, v2]))))
        t = enc.head_m(enc.backbone_m(torch.cat([v1, v2])))
        ncs = NegativeCosineSimilarity()
        expected = 0.5 * (ncs(p[:8], t[8:]) + ncs(p[8:], t[:8]))
    assert per.shape == (8,)
    assert _close(per.mean(), expected)


def test_supervised_per_sample_is_cross_entropy():
    enc, batch = _build("supervised"), _batch()
    v1, v2 = _views(enc, batch)
    per = enc.pair_loss(v1, v2, batch)
    logits = enc.logits(v1)
    assert logits.shape == (8, 10)
    assert enc.class_scores(batch.x).shape == (8, 10)
    assert per.shape == (8,)
    assert _close(per.mean(), torch.nn.CrossEntropyLoss()(logits, batch.y))
    assert torch.equal(enc.project(torch.ones(2, 3)), torch.ones(2, 3))


@pytest.mark.parametrize(
    "name, reference",
    [("barlow_twins", BarlowTwinsLoss()), ("vicreg", VICRegLoss())],
)
def test_batch_level_losses_mean_and_gradient(name, reference):
    """Mean of the per-sample values is the lightly loss, and so is its gradient."""
    enc = _build(name)
    g = torch.Generator().manual_seed(0)
    za = torch.randn(16, 64, generator=g, requires_grad=True)
    zb = (za.detach() + 0.3 * torch.randn(16, 64, generator=g)).requires_grad_(True)
    per = enc.per_sample_loss(za, zb)
    expected = reference(za, zb)
    assert per.shape == (16,)
    assert _close(per.mean(), expected)
    assert per.std() > 0  # the values differ between samples
    ga = torch.autograd.grad(per.mean(), (za, zb))
    gb = torch.autograd.grad(expected, (za, zb))
    assert all(_close(x, y, 1e-4) for x, y in zip(ga, gb, strict=True))
    batch = _batch()
    v1, v2 = _views(enc, batch)
    with torch.no_grad():
        z = enc.head(enc.backbone(torch.cat([v1, v2])))
        assert _close(enc.pair_loss(v1, v2, batch).mean(), reference(z[:8], z[8:]))


def test_clip_per_sample_matches_open_clip_loss():
    from open_clip import ClipLoss

    enc, batch = _build("clip"), _batch()
    g = torch.Generator().manual_seed(0)
    v = enc.augment(batch.x, g)
    tokens = enc.captions(batch, g)
    per = enc.image_text_loss(v, tokens)
    with torch.no_grad():
        img, txt = enc.embed(v), enc.encode_text(tokens)
        expected = ClipLoss()(img, txt, enc.clip.logit_scale.exp())
    assert per.shape == (8,)
    assert _close(per.mean(), expected)


# --- momentum targets ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["moco_v2", "byol"])
def test_momentum_target_moves_by_ema(name):
    enc, batch = _build(name), _batch()
    assert "momentum" in enc.capabilities
    assert not any(p.requires_grad for p in enc.backbone_m.parameters())
    ids = {id(p) for p in enc.trainable_parameters()}
    assert not ids & {id(p) for p in enc.head_m.parameters()}
    before = [p.clone() for p in enc.backbone_m.parameters()]
    opt = torch.optim.SGD(enc.trainable_parameters(), lr=0.1)
    enc.objective(batch, torch.Generator().manual_seed(0)).mean().backward()
    opt.step()
    enc.on_step_end()
    m = 0.99
    for old, new, online in zip(before, enc.backbone_m.parameters(), enc.backbone.parameters(), strict=True):
        assert torch.allclose(new, m * old + (1 - m) * online, atol=1e-7)
    assert any(not torch.equal(o, n) for o, n in zip(before, enc.backbone_m.parameters(), strict=True))
    assert int(enc.momentum_step) == 1


def test_momentum_cosine_schedule():
    enc = _build("byol", momentum=0.9, momentum_end=1.0, momentum_steps=10)
    got = []
    for _ in range(12):
        got.append(enc.current_momentum())
        enc.on_step_end()
    assert got[0] == pytest.approx(0.9)
    assert got[5] == pytest.approx(cosine_schedule(5, 10, 0.9, 1.0))
    assert got[-1] == 1.0 and got == sorted(got)


# --- CLIP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vision", ["backbone", "open_clip"])
def test_clip_trains_offline(vision):
    enc, batch = _build("clip", vision=vision), _batch()
    assert enc.tokenizer(["a photo of a 7."]).shape == (1, 16)
    assert "views" not in enc.capabilities and {"labels", "text"} <= enc.capabilities
    opt = torch.optim.Adam(enc.trainable_parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(2):
        loss = enc.objective(batch, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        enc.on_step_end()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    enc.eval()
    with torch.no_grad():
        scores = enc.class_scores(batch.x)
        feats = enc.features(batch.x)
        z = enc.embed(enc.augment(batch.x, g))
    assert scores.shape == (8, 10) and scores.abs().max() <= 1 + 1e-5
    assert feats.shape == (8, enc.feat_dim) and z.shape == (8, 64)


def test_clip_refuses_downloads():
    with pytest.raises(ValueError, match="not a local file"):
        _build("clip", model="ViT-B-32", pretrained="openai")
    with pytest.raises(ValueError, match="hub"):
        _build("clip", model="hf-hub:someone/some-clip")


def test_clip_csv_captions(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text('index,caption\n3,"a handwritten three, slanted"\n')
    enc, batch = _build("clip", captions=str(path)), _batch()
    train = enc.captions(batch, torch.Generator().manual_seed(0))
    assert torch.equal(train[3], enc.tokenizer(["a handwritten three, slanted"])[0])
    assert any(torch.equal(train[1], enc.class_tokens[t, 1]) for t in range(len(enc.templates)))
    enc.eval()
    evals = enc.captions(batch, torch.Generator().manual_seed(0))
    assert any(torch.equal(evals[3], enc.class_tokens[t, 3]) for t in range(len(enc.templates)))


# --- every encoder trains ------------------------------------------------------------------


@pytest.mark.parametrize("name", MINE)
def test_one_step_fp32_and_bf16(name):
    enc, batch = _build(name), _batch()
    opt = torch.optim.Adam(enc.trainable_parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    before = copy.deepcopy(enc.state_dict())
    for precision in ("fp32", "bf16"):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            per = enc.objective(batch, g)
        assert per.shape == (8,) and per.dtype == torch.float32
        assert torch.isfinite(per).all()
        opt.zero_grad()
        per.mean().backward()
        opt.step()
        enc.on_step_end()
    assert any(not torch.equal(before[k], v) for k, v in enc.state_dict().items())
    enc.eval()
    with torch.no_grad():
        assert enc.features(batch.x).shape == (8, enc.feat_dim)
        assert enc.embed(enc.augment(batch.x, g)).shape[0] == 8
        assert enc.target_embed(enc.augment(batch.x, g)).shape[0] == 8


def test_resnet18_cifar_shapes():
    enc, batch = _build("byol", backbone="resnet18-cifar", size=32), _batch(n=2, size=32)
    enc.eval()
    with torch.no_grad():
        assert enc.features(batch.x).shape == (2, 512)
        assert enc.embed(enc.prepare(batch.x)).shape == (2, 32)
