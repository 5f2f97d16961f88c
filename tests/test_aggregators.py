"""Temporal aggregators: every ``conf/aggregator/*.yaml`` option (shape, exact masking,
gradients, any T) plus formula checks against direct implementations of the papers' equations.

Options are discovered from the config folder and built with ``hydra.utils.instantiate`` the
way ``build_module`` does, so an aggregator added later is covered without editing this file
(add its size keys to ``SHRINK`` if it is big).
"""

from __future__ import annotations

from importlib import resources

import hydra.utils
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from vltr.models.aggregators import masked_mean
from vltr.models.attention import (
    FrameAttentionAggregator,
    MoveDualAggregator,
    PrototypicalSelfAttention,
    masked_softmax,
)
from vltr.models.vlad import NetVLAD, NeXtVLAD

CONF = resources.files("vltr.conf").joinpath("aggregator")
OPTIONS = sorted(p.name[: -len(".yaml")] for p in CONF.iterdir() if p.name.endswith(".yaml"))
D = 16
# paper sizes -> test sizes (only keys a config sets to a value are replaced)
SHRINK = {
    "hidden_dim": 12,
    "num_clusters": 5,
    "attentive_dim": 10,
    "codebook_dim": 9,
    "attention_dim": 8,
}


def build(option: str, **overrides: object) -> nn.Module:
    cfg = OmegaConf.load(str(CONF.joinpath(f"{option}.yaml")))
    for key, value in {**SHRINK, **overrides}.items():
        if key in cfg and (cfg[key] is not None or key in overrides):
            cfg[key] = value
    return hydra.utils.instantiate(cfg, input_dim=D)


def prefix_mask(lengths: list[int], t: int) -> torch.Tensor:
    return torch.arange(t).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def test_every_paper_aggregator_has_a_config() -> None:
    assert {
        "nonlinear",
        "netvlad",
        "netvlad_gated",
        "nextvlad",
        "psa",
        "move_dual",
        "frame_attention",
    } <= set(OPTIONS)


@pytest.mark.parametrize("option", OPTIONS)
def test_shrunk_for_tests(option: str) -> None:
    # keeps this file fast: a new config with a big size key must add it to SHRINK
    n = sum(p.numel() for p in build(option).parameters())
    assert 0 < n < 50_000, f"{option}: {n} parameters at D={D}; add its size keys to SHRINK"


@pytest.mark.parametrize("t", [60, 150, 200])
@pytest.mark.parametrize("option", OPTIONS)
def test_output_shape_for_any_length(option: str, t: int) -> None:
    torch.manual_seed(0)
    agg = build(option)
    assert isinstance(agg.output_dim, int)
    x = torch.randn(3, t, D)
    mask = prefix_mask([t, t // 2, 1], t)
    for m in (mask, None):
        out = agg(x, m)
        assert out.shape == (3, agg.output_dim)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("option", OPTIONS)
def test_masked_frames_have_no_effect(option: str) -> None:
    torch.manual_seed(0)
    agg = build(option).eval()
    t = 20
    x = torch.randn(4, t, D)
    lengths = [t, 13, 7, 1]
    mask = prefix_mask(lengths, t)
    mask[1, 3] = False  # a hole inside the sequence too
    garbage = torch.where(mask.unsqueeze(-1), x, 1e4 * torch.randn_like(x))
    with torch.no_grad():
        out = agg(x, mask)
        torch.testing.assert_close(agg(garbage, mask), out)
        # same as never having seen the masked frames (per row: the batch does not matter)
        for i in (0, 2, 3):
            torch.testing.assert_close(agg(x[i : i + 1, : lengths[i]])[0], out[i])
        keep = mask[1].nonzero().squeeze(1)
        torch.testing.assert_close(agg(x[1:2, keep])[0], out[1])
        torch.testing.assert_close(agg(x, torch.ones(4, t, dtype=torch.bool)), agg(x))
    # training mode too (dropout draws the same numbers; no batch statistics over frames)
    agg.train()
    torch.manual_seed(1)
    a = agg(x, mask)
    torch.manual_seed(1)
    b = agg(garbage, mask)
    torch.testing.assert_close(b, a)


@pytest.mark.parametrize("option", OPTIONS)
def test_nonfinite_padding_has_no_effect(option: str) -> None:
    torch.manual_seed(0)
    agg = build(option).eval()
    x = torch.randn(2, 8, D)
    mask = prefix_mask([8, 5], 8)
    pad = torch.where(mask.unsqueeze(-1), x, torch.tensor(float("inf")))
    pad[1, 6] = float("nan")
    with torch.no_grad():
        torch.testing.assert_close(agg(pad, mask), agg(x, mask))


@pytest.mark.parametrize("option", OPTIONS)
def test_all_masked_row_is_finite(option: str) -> None:
    torch.manual_seed(0)
    agg = build(option)
    x = torch.randn(3, 9, D)
    mask = prefix_mask([0, 9, 4], 9)
    for train in (False, True):
        agg.train(train)
        out = agg(x, mask)
        assert torch.isfinite(out).all()
    agg.zero_grad()
    (out * torch.randn_like(out)).sum().backward()
    for name, p in agg.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("option", OPTIONS)
def test_gradients_reach_every_parameter(option: str) -> None:
    torch.manual_seed(0)
    agg = build(option).train()
    x = torch.randn(4, 12, D)
    out = agg(x, prefix_mask([12, 8, 5, 12], 12))
    # a random projection, not out.sum(): the sum of a LayerNorm output has no gradient
    (out * torch.randn_like(out)).sum().backward()
    for name, p in agg.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{option}: no gradient to {name}"


# -- formula checks: direct loops over the equations, in float64


def _mask(b: int, t: int) -> torch.Tensor:
    m = torch.ones(b, t, dtype=torch.bool)
    m[0, -2:] = False
    m[1, 1] = False
    return m


def _randomise_batch_norms(module: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters (eval-mode formula checks)."""
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm1d):
            with torch.no_grad():
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_()


def _bn(bn: nn.BatchNorm1d | None, v: torch.Tensor) -> torch.Tensor:
    if bn is None:
        return v
    return (v - bn.running_mean) / (bn.running_var + bn.eps).sqrt() * bn.weight + bn.bias


@pytest.mark.parametrize(
    "residual,batch_norm,cluster_gate",
    [(True, False, False), (True, True, False), (False, True, True)],
)
def test_netvlad_equals_eq_2_3_loop(residual: bool, batch_norm: bool, cluster_gate: bool) -> None:
    torch.manual_seed(0)
    b, t, d, k = 2, 5, 3, 4
    agg = (
        NetVLAD(
            d,
            num_clusters=k,
            hidden_dim=6,
            residual=residual,
            batch_norm=batch_norm,
            cluster_gate=cluster_gate,
        )
        .double()
        .eval()
    )
    _randomise_batch_norms(agg)
    assert (agg.centroids is not None) == residual
    x, mask = torch.randn(b, t, d, dtype=torch.float64), _mask(b, t)
    w, bias = agg.assign.weight, agg.assign.bias
    assert (bias is None) == batch_norm  # the BatchNorm of the logits replaces b_k
    expected = []
    for i in range(b):
        v = torch.zeros(k, d, dtype=torch.float64)
        for s in range(t):
            if not mask[i, s]:
                continue
            xs = _bn(agg.input_bn, x[i, s])
            logits = torch.stack(
                [w[j] @ xs + (bias[j] if bias is not None else 0.0) for j in range(k)]
            )
            logits = _bn(agg.assign_bn, logits)
            a = logits.exp() / logits.exp().sum()  # eq. 3
            for j in range(k):
                mu = agg.centroids[j] if residual else 0.0
                v[j] += a[j] * (xs - mu)  # eq. 2 (without mu: NetVLAGD)
        if cluster_gate:
            v = v * torch.sigmoid(agg.cluster_gate)
        v = torch.stack([v[j] / v[j].norm() for j in range(k)])  # intra-normalisation
        v = v.flatten() / v.flatten().norm()
        h = agg.fc(v)
        if batch_norm:
            h = _bn(agg.hidden_bn, h).clamp(0.0, 6.0)  # BatchNorm + ReLU6
        expected.append(h)
    torch.testing.assert_close(agg(x, mask), torch.stack(expected))


def test_netvlad_gated_is_the_released_netvlagd() -> None:
    # LOUPE's NetVLAGD as VideoLT's NetVLADModel / MOVE's NetVLAD_Dynamic_Aggregator build it:
    # input BatchNorm; bias-free assignment + BatchNorm on its logits; no centroids; a static
    # [K, D] gate; bias-free hidden FC + BatchNorm (+ ReLU6); no context gating
    k, h = 5, 12
    agg = build("netvlad_gated")
    shapes = {name: tuple(p.shape) for name, p in agg.named_parameters()}
    assert shapes == {
        "input_bn.weight": (D,),
        "input_bn.bias": (D,),
        "assign.weight": (k, D),
        "assign_bn.weight": (k,),
        "assign_bn.bias": (k,),
        "cluster_gate": (k, D),
        "fc.weight": (h, k * D),
        "hidden_bn.weight": (h,),
        "hidden_bn.bias": (h,),
    }
    buffers = {name for name, _ in agg.named_buffers()}
    assert {"input_bn.running_mean", "assign_bn.running_var", "hidden_bn.running_mean"} <= buffers
    out = agg.train()(torch.randn(6, 9, D))
    assert out.min() >= 0 and out.max() <= 6  # ReLU6


@pytest.mark.parametrize("option", ["netvlad", "netvlad_gated", "nextvlad", "move_dual"])
def test_batch_statistics_come_from_real_frames_only(option: str) -> None:
    torch.manual_seed(0)
    agg = build(option).train()
    x = torch.randn(4, 10, D) + 3.0
    mask = prefix_mask([10, 6, 3, 8], 10)
    garbage = torch.where(mask.unsqueeze(-1), x, 1e3 * torch.randn_like(x))
    twin = build(option).train()
    twin.load_state_dict(agg.state_dict())
    agg(x, mask)
    twin(garbage, mask)
    for (name, a), (_, b) in zip(agg.named_buffers(), twin.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    # the input BatchNorm's running mean moved towards the mean of the real frames
    bn = agg.netvlad.input_bn if option == "move_dual" else getattr(agg, "input_bn", None)
    if bn is not None:
        torch.testing.assert_close(bn.running_mean, bn.momentum * x[mask].mean(0))


def _branch_scales(d: int, k: int, hidden: int, batch: int, frames: int) -> tuple[float, float]:
    agg = MoveDualAggregator(
        d, num_heads=4, num_clusters=k, attentive_dim=hidden, codebook_dim=hidden
    ).train()
    x = torch.randn(batch, frames, d).relu()  # non-negative, like CNN features
    with torch.no_grad():
        return float(agg.self_attentive(x).std()), float(agg.codebook_attentive(x).std())


@pytest.mark.parametrize("d,k,hidden", [(64, 16, 256), (2048, 64, 1024)])
def test_move_dual_branches_have_comparable_scales(d: int, k: int, hidden: int) -> None:
    # the synthetic size and VideoLT's (K * D = 131,072 inputs to f_phi): without the codebook
    # branch's normalisation its output was 23x / 250x smaller than the attentive branch's
    torch.manual_seed(0)
    attentive, codebook = _branch_scales(d, k, hidden, batch=16, frames=12)
    assert 0.5 <= attentive / codebook <= 2.0, (attentive, codebook)


def test_nextvlad_equals_loop() -> None:
    torch.manual_seed(0)
    b, t, d, k, lam, g = 2, 4, 4, 3, 2, 4
    for batch_norm in (False, True):
        agg = (
            NeXtVLAD(
                d, num_clusters=k, expansion=lam, groups=g, hidden_dim=5, batch_norm=batch_norm
            )
            .double()
            .eval()
        )
        _randomise_batch_norms(agg)
        x, mask = torch.randn(b, t, d, dtype=torch.float64), _mask(b, t)
        gd = lam * d // g
        expected = []
        for i in range(b):
            y = torch.zeros(k, gd, dtype=torch.float64)
            for s in range(t):
                if not mask[i, s]:
                    continue
                xe = agg.expand(x[i, s])  # lambda N
                alpha_g = torch.sigmoid(agg.group_attention(xe))  # [G]
                logits = _bn(agg.assign_bn, agg.assign(xe)).view(g, k)
                for gi in range(g):
                    a = logits[gi].exp() / logits[gi].exp().sum()  # softmax over clusters
                    xg = xe[gi * gd : (gi + 1) * gd]
                    for j in range(k):
                        y[j] += alpha_g[gi] * a[j] * (xg - agg.centroids[j])
            y = torch.stack([y[j] / y[j].norm() for j in range(k)]).flatten()
            y = _bn(agg.descriptor_bn, y) if batch_norm else y / y.norm()
            expected.append(_bn(agg.hidden_bn, agg.fc(y)))
        torch.testing.assert_close(agg(x, mask), torch.stack(expected))


def test_psa_query_is_masked_mean_and_matches_multihead_attention() -> None:
    torch.manual_seed(0)
    b, t, d, h = 3, 7, 8, 4
    psa = PrototypicalSelfAttention(d, num_heads=h).double().eval()
    x, mask = torch.randn(b, t, d, dtype=torch.float64), _mask(b, t)
    seen: list[torch.Tensor] = []
    psa.q_proj.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    out = psa(x, mask)
    proto = torch.stack([x[i][mask[i]].mean(0) for i in range(b)])
    torch.testing.assert_close(seen[0], proto)
    # the same as PyTorch's MultiheadAttention with the prototype as the only query
    mha = nn.MultiheadAttention(d, h, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(
            torch.cat([psa.q_proj.weight, psa.k_proj.weight, psa.v_proj.weight])
        )
        mha.in_proj_bias.copy_(
            torch.cat([psa.q_proj.bias, torch.zeros(d, dtype=torch.float64), psa.v_proj.bias])
        )
        mha.out_proj.load_state_dict(psa.out_proj.state_dict())
    o, weights = mha(proto.unsqueeze(1), x, x, key_padding_mask=~mask, average_attn_weights=False)
    torch.testing.assert_close(out, psa.norm(proto + o.squeeze(1)))
    torch.testing.assert_close(psa.attention(x, mask), weights.squeeze(2))
    assert psa.output_dim == d


def test_move_dual_is_concatenation_of_projected_parts() -> None:
    torch.manual_seed(0)
    agg = MoveDualAggregator(
        D, num_heads=4, num_clusters=5, attentive_dim=10, codebook_dim=9
    ).eval()
    x, mask = torch.randn(2, 6, D), _mask(2, 6)
    out = agg(x, mask)
    assert agg.output_dim == 19 and out.shape == (2, 19)
    torch.testing.assert_close(out[:, :10], agg.f_theta(agg.psa(x, mask)))
    torch.testing.assert_close(out[:, :10], agg.self_attentive(x, mask))
    torch.testing.assert_close(out[:, 10:], agg.codebook_attentive(x, mask))
    # the codebook branch is a plain NetVLAD whose hidden layer is f_phi
    vlad = NetVLAD(D, num_clusters=5, hidden_dim=9).eval()
    vlad.load_state_dict(agg.netvlad.state_dict())
    torch.testing.assert_close(out[:, 10:], vlad(x, mask))
    psa = PrototypicalSelfAttention(D, num_heads=4).eval()
    psa.load_state_dict(agg.psa.state_dict())
    torch.testing.assert_close(out[:, :10], agg.f_theta(psa(x, mask)))


def test_frame_attention_sigmoid_formula() -> None:
    torch.manual_seed(0)
    agg = FrameAttentionAggregator(D, attention_dim=8).double().eval()
    x, mask = torch.randn(2, 6, D, dtype=torch.float64), _mask(2, 6)
    lin1, lin2 = agg.attention_net[0], agg.attention_net[2]
    a = torch.sigmoid(torch.tanh(x @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias)
    a = a.squeeze(-1) * mask
    torch.testing.assert_close(agg.attention(x, mask), a)
    ln, lin = agg.embedding[0], agg.embedding[1]
    emb = torch.relu(lin(ln(x)))  # eq. 2: normalisation -> linear -> ReLU
    expected = torch.stack([(a[i, mask[i], None] * emb[i, mask[i]]).mean(0) for i in range(2)])
    torch.testing.assert_close(agg(x, mask), expected)
    # eq. 4 read literally: the classifier per frame on T (.) A, averaged over real frames
    head = nn.Linear(agg.output_dim, 3).double()
    per_frame = torch.stack([head(a[i, mask[i], None] * emb[i, mask[i]]).mean(0) for i in range(2)])
    torch.testing.assert_close(head(agg(x, mask)), per_frame)


def test_frame_attention_softmax_and_reuse() -> None:
    torch.manual_seed(0)
    agg = FrameAttentionAggregator(D, attention_dim=8, normalization="softmax", embed=False)
    x, mask = torch.randn(2, 6, D), _mask(2, 6)
    a = agg.attention(x, mask)
    torch.testing.assert_close(a.sum(1), torch.ones(2))
    assert (a[~mask] == 0).all()
    torch.testing.assert_close(agg(x, mask), (a.unsqueeze(-1) * x).sum(1))
    assert agg.output_dim == D
    # MEID's second expert: frozen attention, other weights (eq. 8's R) through pool()
    agg.attention_net.requires_grad_(False)
    r = 1.0 / (agg.attention(x, mask) + 0.5)
    assert agg.pool(x, r, mask).shape == (2, D)
    with pytest.raises(ValueError):
        FrameAttentionAggregator(D, normalization="relu")


def test_masked_softmax_and_masked_mean_edge_cases() -> None:
    logits = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[False] * 4, [True, False, True, True]])
    w = masked_softmax(logits, mask)
    assert (w[0] == 0).all() and w[1, 1] == 0
    torch.testing.assert_close(w[1, mask[1]], torch.softmax(logits[1, mask[1]], 0))
    w.sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert masked_mean(torch.ones(1, 3, 2), torch.zeros(1, 3, dtype=torch.bool)).abs().sum() == 0
