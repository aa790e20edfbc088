"""CCNet, PSANet, EMANet, ENCNet, CE2P and ISNet: SSSegmentation default-config parameter counts, the pure-PyTorch
ops against naive loop references (values and gradients), EMANet's bases across 2 processes, and behaviour.

SSSegmentation's counts were read from its own modules (``/work/ssseg`` on ``sys.path``, non-torch imports stubbed,
``pretrained=False``, ``TRAIN`` mode so the auxiliary decoder is built); CCNet and PSANet need mmcv there, so their
counts are SSSeg's modules with mmcv's criss-cross attention counted by formula (PSAMask has no parameters).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from segkit.errors import RecipeError, SegkitError
from segkit.models import build_criterion, build_segmentor
from segkit.models.layers.criss_cross import CrissCrossAttention
from segkit.models.layers.encoding import ContextEncoding, Encoding
from segkit.models.layers.psa_mask import PSAMask
from segkit.models.layers.semantic_level_context import class_centres
from segkit.models.losses.targets import class_presence
from segkit.models.segmentors.ce2p import balanced_edge_losses

from .helpers import TINY_BACKBONE, count_parameters, make_recipe

R101 = {"type": "ResNet", "structure_type": "resnet101conv3x3stem", "pretrained": False, "outstride": 8}
SYNC = {"type": "SyncBatchNorm"}


def _on_meta(**fields):
    with torch.device("meta"):
        return build_segmentor(make_recipe(norm_cfg=dict(SYNC), **fields), pretrained=False)


def _head_and_aux(segmentor) -> int:
    aux = count_parameters(segmentor.aux_heads) if segmentor.aux_heads is not None else 0
    return count_parameters(segmentor.head) + aux


def _grads(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.grad.clone() for t in tensors]


# ----------------------------------------------------------------------------------------------- CCNet


def naive_criss_cross(x, query, key, value, gamma):
    """The criss-cross attention written out position by position (mmcv's definition)."""
    _, _, height, width = x.shape
    out = torch.zeros_like(x)
    for b in range(x.size(0)):
        for h in range(height):
            for w in range(width):
                q = query[b, :, h, w]
                column = [(q * key[b, :, i, w]).sum() for i in range(height) if i != h]
                row = [(q * key[b, :, h, j]).sum() for j in range(width)]
                weights = torch.softmax(torch.stack(column + row), dim=0)
                values = [value[b, :, i, w] for i in range(height) if i != h] + [value[b, :, h, j] for j in range(width)]
                out[b, :, h, w] = (weights.unsqueeze(1) * torch.stack(values)).sum(0)
    return gamma * out + x


def test_criss_cross_attention_matches_a_loop_reference_values_and_gradients():
    torch.manual_seed(0)
    cca = CrissCrossAttention(16).double()
    torch.nn.init.constant_(cca.gamma.scale, 0.7)  # 0 at init would hide the attention
    x = torch.randn(2, 16, 5, 4, dtype=torch.double, requires_grad=True)
    out = cca(x)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = naive_criss_cross(x_ref, cca.query_conv(x_ref), cca.key_conv(x_ref), cca.value_conv(x_ref), cca.gamma.scale)
    assert (out - ref).abs().max() < 1e-12
    weight = torch.randn_like(out)
    cca.zero_grad()
    (out * weight).sum().backward()
    fast = _grads(x, *cca.parameters())
    cca.zero_grad()
    (ref * weight).sum().backward()
    slow = _grads(x_ref, *cca.parameters())
    assert max((a - b).abs().max().item() for a, b in zip(fast, slow, strict=True)) < 1e-12


def test_criss_cross_attention_has_mmcv_parameter_names_and_starts_as_identity():
    cca = CrissCrossAttention(64)
    assert [n for n, _ in cca.named_parameters()] == [
        "query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias", "value_conv.weight",
        "value_conv.bias", "gamma.scale",
    ]
    assert cca.query_conv.out_channels == 8 and cca.gamma.scale.dim() == 0
    x = torch.randn(1, 64, 6, 7)
    assert torch.equal(cca(x), x)  # gamma = 0


def test_ccnet_default_parameter_count_matches_ssseg():
    # SSSeg CCNET_SEGMENTOR_CFG (num_classes 150): conv_before_cca 9,438,208 + cca 328,321 + conv_after_cca
    # 2,360,320 + decoder 11,874,454 = 24,001,303; auxiliary_decoder 4,796,566; total 71,317,261 with the
    # ResNet-101 (42,519,392). cca by formula: 2 * (512 * 64 + 64) + 512 * 512 + 512 + 1.
    segmentor = _on_meta(type="CCNet", num_classes=150, backbone={**R101, "selected_indices": [2, 3]},
                         head={"feats_channels": 512, "num_recurrence": 2, "dropout": 0.1},
                         auxiliary={"out_channels": 512, "dropout": 0.1})
    assert count_parameters(segmentor.head.cca) == 328_321
    assert count_parameters(segmentor.head) == 24_001_303
    assert _head_and_aux(segmentor) == 24_001_303 + 4_796_566
    assert count_parameters(segmentor) == 71_317_261


def test_ccnet_recurrence_reuses_one_attention():
    torch.manual_seed(0)
    recipe = make_recipe(type="CCNet", head={"feats_channels": 16, "num_recurrence": 3, "dropout": 0.0})
    segmentor = build_segmentor(recipe, pretrained=False).eval()
    calls = []
    segmentor.head.cca.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        segmentor(torch.randn(1, 3, 64, 64))
    assert len(calls) == 3
    assert sum(isinstance(m, CrissCrossAttention) for m in segmentor.modules()) == 1


# ----------------------------------------------------------------------------------------------- PSANet


def naive_psamask(mask: torch.Tensor, psa_type: str, mask_size: tuple[int, int]) -> torch.Tensor:
    """mmcv's ``psamask_{collect,distribute}_forward`` loops, element by element."""
    batch, _, height, width = mask.shape
    h_mask, w_mask = mask_size
    half_h, half_w = (h_mask - 1) // 2, (w_mask - 1) // 2
    rows = []
    for n in range(batch):
        out = [[mask.new_zeros(()) for _ in range(height * width)] for _ in range(height * width)]
        for h in range(height):
            for w in range(width):
                for i in range(max(0, half_h - h), min(h_mask, height + half_h - h)):
                    for j in range(max(0, half_w - w), min(w_mask, width + half_w - w)):
                        p = (i + h - half_h) * width + (j + w - half_w)
                        q = h * width + w
                        value = mask[n, i * w_mask + j, h, w]
                        if psa_type == "collect":
                            out[p][q] = value
                        else:
                            out[q][p] = value
        rows.append(torch.stack([torch.stack(r) for r in out]))
    return torch.stack(rows).reshape(batch, height * width, height, width)


@pytest.mark.parametrize("psa_type", ["collect", "distribute"])
@pytest.mark.parametrize("mask_size", [(7, 9), (3, 3), (4, 2)])
def test_psamask_matches_the_kernel_loops_values_and_gradients(psa_type, mask_size):
    torch.manual_seed(0)
    height, width = 4, 5
    module = PSAMask(psa_type, mask_size)
    mask = torch.randn(2, mask_size[0] * mask_size[1], height, width, dtype=torch.double, requires_grad=True)
    out = module(mask)
    ref = naive_psamask(mask, psa_type, mask_size)
    assert out.shape == (2, height * width, height, width)
    assert torch.equal(out, ref)
    weight = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weight).sum(), mask)
    (grad_ref,) = torch.autograd.grad((ref * weight).sum(), mask)
    assert torch.equal(grad, grad_ref)


def test_psamask_over_complete_mask_covers_every_pair_and_distribute_is_the_transpose():
    height, width = 3, 4
    mask = torch.randn(1, (2 * height - 1) * (2 * width - 1), height, width)
    collect = PSAMask("collect", (2 * height - 1, 2 * width - 1))(mask).reshape(1, 12, 12)
    distribute = PSAMask("distribute", (2 * height - 1, 2 * width - 1))(mask).reshape(1, 12, 12)
    assert (collect != 0).all()
    assert torch.equal(distribute, collect.transpose(1, 2))


def test_psamask_caches_one_index_per_size():
    module = PSAMask("collect", (5, 5))
    module(torch.randn(1, 25, 4, 4))
    module(torch.randn(2, 25, 4, 4))
    module(torch.randn(1, 25, 3, 6))
    assert len(module._index_cache) == 2


@pytest.mark.parametrize("psa_type", ["bi-direction", "collect", "distribute"])
def test_psanet_default_parameter_count_matches_ssseg(psa_type):
    # SSSeg PSANET_SEGMENTOR_CFG (num_classes 150, mask 97x97, compact False): reduce 1,049,600 + attention
    # 5,080,576 + reduce_p 1,049,600 + attention_p 5,080,576 + proj 2,101,248 + decoder 18,952,342 = 33,313,942;
    # auxiliary_decoder 4,796,566; total 80,629,900. One direction (head.type collect or distribute): no
    # reduce_p/attention_p, proj 1,052,672: 26,135,190, total 73,451,148.
    head = {"type": psa_type, "feats_channels": 512, "mask_size": [97, 97], "compact": False, "shrink_factor": 2,
            "normalization_factor": 1.0, "psa_softmax": True, "dropout": 0.1}
    segmentor = _on_meta(type="PSANet", num_classes=150, backbone={**R101, "selected_indices": [2, 3]}, head=head,
                         auxiliary={"out_channels": 512, "dropout": 0.1})
    expected = 33_313_942 if psa_type == "bi-direction" else 26_135_190
    assert count_parameters(segmentor.head) == expected
    assert _head_and_aux(segmentor) == expected + 4_796_566
    assert count_parameters(segmentor) == (80_629_900 if psa_type == "bi-direction" else 73_451_148)


def test_psanet_head_type_spellings():
    recipe = make_recipe(type="PSANet", head={"type": "PSAHead", "psa_type": "distribute", "feats_channels": 8,
                                              "mask_size": [15, 15]})
    assert build_segmentor(recipe, pretrained=False).head.psa_type == "distribute"
    with pytest.raises(RecipeError, match="psa_type is given too"):
        build_segmentor(make_recipe(type="PSANet", head={"type": "collect", "psa_type": "collect"}), pretrained=False)
    with pytest.raises(RecipeError, match=r"head\.psa_type"):
        build_segmentor(make_recipe(type="PSANet", head={"psa_type": "both"}), pretrained=False)


@pytest.mark.parametrize(("size", "shrunk", "align_corners"), [(64, 4, False), (72, 5, True), (80, 5, False)])
def test_psanet_shrink_rule_and_proj_padding(size, shrunk, align_corners):
    torch.manual_seed(0)
    recipe = make_recipe(type="PSANet", head={"feats_channels": 8, "mask_size": [11, 11], "dropout": 0.0})
    segmentor = build_segmentor(recipe, pretrained=False).eval()
    head = segmentor.head
    assert head.proj[0].padding == (1, 1) and head.proj[0].kernel_size == (1, 1)
    seen = {}
    head.psamask_collect.register_forward_hook(lambda m, args, out: seen.update(mask=args[0].shape))
    head.proj.register_forward_hook(lambda m, args, out: seen.update(proj=out.shape))
    with torch.no_grad():
        features = segmentor.extract_features(torch.randn(1, 3, size, size))
        head(features)
        assert head._shrink(features[-1])[1] is align_corners
    assert seen["mask"][2:] == (shrunk, shrunk)
    assert seen["proj"][2:] == (shrunk + 2, shrunk + 2)  # SSSeg's padding=1 on a 1x1 conv


def test_psanet_compact_reads_the_attention_as_the_position_matrix():
    torch.manual_seed(0)
    recipe = make_recipe(type="PSANet", head={"feats_channels": 8, "mask_size": [4, 4], "compact": True,
                                              "dropout": 0.0})
    segmentor = build_segmentor(recipe, pretrained=False).eval()
    assert not any(isinstance(m, PSAMask) for m in segmentor.modules())
    with torch.no_grad():
        assert segmentor(torch.randn(1, 3, 64, 64))["out"].shape == (1, 4, 8, 8)  # 8x8 features shrunk to 4x4


# ----------------------------------------------------------------------------------------------- EMANet


def test_emanet_default_parameter_count_matches_ssseg_and_mid_conv_is_frozen():
    # SSSeg EMANET_SEGMENTOR_CFG (num_classes 150): ema_in_conv 9,438,208 + ema_mid_conv 262,656 (frozen, counted)
    # + ema_out_conv 263,168 + bottleneck 2,360,320 + decoder 11,874,454 = 24,198,806; auxiliary_decoder 4,796,566;
    # total 71,514,764. The bases (1 x 512 x 64) are a buffer.
    segmentor = _on_meta(type="EMANet", num_classes=150, backbone={**R101, "selected_indices": [2, 3]},
                         head={"feats_channels": 512, "momentum": 0.1, "num_stages": 3, "num_bases": 64,
                               "dropout": 0.1},
                         auxiliary={"out_channels": 512, "dropout": 0.1})
    head = segmentor.head
    assert count_parameters(head) == 24_198_806
    assert _head_and_aux(segmentor) == 24_198_806 + 4_796_566
    assert count_parameters(segmentor) == 71_514_764
    assert count_parameters(head.ema_mid_conv) == 262_656
    assert not any(p.requires_grad for p in head.ema_mid_conv.parameters())
    assert sum(p.numel() for p in segmentor.parameters() if p.requires_grad) == 71_514_764 - 262_656
    assert head.ema_module.bases.shape == (1, 512, 64) and "head.ema_module.bases" in dict(segmentor.named_buffers())


def _em_bases(feats: torch.Tensor, bases: torch.Tensor, num_stages: int) -> torch.Tensor:
    """The EM iterations written out: per image, responsibilities then L1/L2-normalised bases."""
    out = []
    for f in feats.flatten(2):  # [C, N]
        mu = bases[0]
        for _ in range(num_stages):
            z = torch.softmax(f.t() @ mu, dim=1)  # [N, K]
            z = z / z.sum(0, keepdim=True)
            mu = f @ z
            mu = mu / mu.norm(dim=0, keepdim=True)
        out.append(mu)
    return torch.stack(out)


def _emanet(seed: int = 0):
    torch.manual_seed(seed)
    recipe = make_recipe(type="EMANet", head={"feats_channels": 16, "num_bases": 8, "momentum": 0.1,
                                              "dropout": 0.0})
    return build_segmentor(recipe, pretrained=False)


def _captured_batch_bases(segmentor, images: torch.Tensor) -> torch.Tensor:
    """The per-process mean of the batch bases that the EM module hands to ``reduce_mean`` (train mode)."""
    captured = []
    segmentor = copy.deepcopy(segmentor).train()
    segmentor.reduce_mean = lambda t: captured.append(t.clone()) or t
    segmentor(images)
    return captured[0]


def test_ema_bases_update_formula_in_one_process():
    segmentor = _emanet()
    module = segmentor.head.ema_module
    images = torch.randn(2, 3, 64, 64)
    before = module.bases.clone()
    seen = {}
    segmentor.head.ema_mid_conv.register_forward_hook(lambda m, args, out: seen.update(feats=out.detach()))
    segmentor.train()(images)
    batch_bases = _em_bases(seen["feats"], before, 3).mean(0, keepdim=True)
    expected = 0.9 * before + 0.1 * batch_bases / batch_bases.norm(dim=1, keepdim=True)
    assert torch.allclose(module.bases, expected, atol=1e-6)
    assert torch.allclose(_captured_batch_bases(_emanet(), images), batch_bases, atol=1e-6)
    segmentor.eval()
    after = module.bases.clone()
    with torch.no_grad():
        segmentor(images)
    assert torch.equal(module.bases, after)  # eval reads the bases, never updates them


def test_ema_reconstruction_carries_no_gradient_to_the_em_steps():
    segmentor = _emanet().train()
    out = segmentor(torch.randn(2, 3, 64, 64))
    (out["out"].sum() + out["aux"].sum()).backward()
    assert segmentor.head.ema_mid_conv.weight.grad is None
    assert segmentor.head.ema_in_conv[0].weight.grad is not None


def _ema_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from segkit.engine.distributed import all_reduce_mean

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        segmentor = _emanet().train()
        segmentor.reduce_mean = all_reduce_mean  # as the engine does under DDP
        images = torch.randn(2 * world_size, 3, 64, 64, generator=torch.Generator().manual_seed(7))
        segmentor(images[2 * rank:2 * rank + 2])  # each rank sees its own half of the batch
        torch.save(segmentor.head.ema_module.bases, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ema_bases_are_identical_on_two_gloo_ranks_and_equal_the_averaged_update(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ema_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(rank0, rank1)
    # by hand: the mean over ranks of each rank's batch-mean bases, normalised, then the momentum step
    segmentor = _emanet()
    initial = segmentor.head.ema_module.bases.clone()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    local = [_captured_batch_bases(segmentor, images[2 * r:2 * r + 2]) for r in range(2)]
    mean = (local[0] + local[1]) / 2
    expected = 0.9 * initial + 0.1 * mean / mean.norm(dim=1, keepdim=True)
    assert torch.allclose(rank0, expected, atol=1e-6)
    # normalising each rank's bases first and averaging afterwards is a different value
    wrong = 0.9 * initial + 0.1 * sum(b / b.norm(dim=1, keepdim=True) for b in local) / 2
    assert not torch.allclose(rank0, wrong, atol=1e-6)


# ----------------------------------------------------------------------------------------------- ENCNet

ENC_HEAD = {"feats_channels": 512, "num_codes": 32, "extra": {"use_se_loss": True, "add_lateral": False},
            "dropout": 0.1}


def test_encnet_default_parameter_count_matches_ssseg():
    # SSSeg ENCNET_SEGMENTOR_CFG (num_classes 150): bottleneck 9,438,208 + enc_module 542,304 + se_layer 76,950 +
    # decoder 76,950 = 10,134,412; auxiliary_decoder 4,796,566; total 57,450,370.
    segmentor = _on_meta(type="ENCNet", num_classes=150, backbone={**R101, "selected_indices": [1, 2, 3]},
                         head={**ENC_HEAD, "in_channels_list": [512, 1024, 2048]},
                         auxiliary={"out_channels": 512, "dropout": 0.1},
                         losses={"loss_cls": {"type": "CrossEntropyLoss"}, "loss_aux": {"type": "CrossEntropyLoss"},
                                 "loss_se": {"type": "CrossEntropyLoss", "use_sigmoid": True}})
    head = segmentor.head
    assert count_parameters(head.enc_module) == 542_304
    assert count_parameters(head) == 10_134_412
    assert _head_and_aux(segmentor) == 10_134_412 + 4_796_566
    assert count_parameters(segmentor) == 57_450_370
    assert isinstance(head.enc_module.encoding[1], torch.nn.BatchNorm1d)  # SyncBatchNorm's single-process stand-in


def test_encnet_lateral_parameter_count_by_formula():
    segmentor = _on_meta(type="ENCNet", num_classes=150, backbone={**R101, "selected_indices": [1, 2, 3]},
                         head={**ENC_HEAD, "extra": {"use_se_loss": False, "add_lateral": True}},
                         auxiliary={"out_channels": 512, "dropout": 0.1})
    laterals = (512 * 512 + 512 + 2 * 512) + (1024 * 512 + 512 + 2 * 512)  # 1x1 conv with bias + BN, per lateral
    fusion = 3 * 512 * 512 * 9 + 512 + 2 * 512
    assert count_parameters(segmentor.head.lateral_convs) == laterals
    assert count_parameters(segmentor.head.fusion) == fusion
    assert count_parameters(segmentor.head) == 10_134_412 - 76_950 + laterals + fusion


def test_encnet_in_channels_list_is_checked():
    recipe = make_recipe(type="ENCNet", backbone={**TINY_BACKBONE, "selected_indices": [1, 2, 3]},
                         head={"feats_channels": 8, "num_codes": 4, "in_channels_list": [16, 32, 65],
                               "extra": {"use_se_loss": False}})
    with pytest.raises(RecipeError, match=r"head\.in_channels_list"):
        build_segmentor(recipe, pretrained=False)
    recipe.head["extra"] = {"use_se_los": False}
    with pytest.raises(RecipeError, match=r"head\.extra\.use_se_los"):
        build_segmentor(recipe, pretrained=False)


def naive_encoding(x, codewords, scale):
    batch, channels = x.shape[:2]
    feats = x.reshape(batch, channels, -1)
    out = []
    for b in range(batch):
        codes = []
        for k in range(codewords.size(0)):
            logits = torch.stack([scale[j] * ((feats[b, :, n] - codewords[j]) ** 2).sum()
                                  for n in range(feats.size(2)) for j in range(codewords.size(0))])
            weights = torch.softmax(logits.view(feats.size(2), codewords.size(0)), dim=1)[:, k]
            codes.append(sum(weights[n] * (feats[b, :, n] - codewords[k]) for n in range(feats.size(2))))
        out.append(torch.stack(codes))
    return torch.stack(out)


def test_encoding_matches_a_loop_reference_values_and_gradients():
    torch.manual_seed(0)
    layer = Encoding(6, 4).double()
    x = torch.randn(2, 6, 3, 2, dtype=torch.double, requires_grad=True)
    out = layer(x)
    ref = naive_encoding(x, layer.codewords, layer.scale)
    assert out.shape == (2, 4, 6)
    assert (out - ref).abs().max() < 1e-12
    weight = torch.randn_like(out)
    fast = torch.autograd.grad((out * weight).sum(), [x, layer.codewords, layer.scale])
    slow = torch.autograd.grad((ref * weight).sum(), [x, layer.codewords, layer.scale])
    assert max((a - b).abs().max().item() for a, b in zip(fast, slow, strict=True)) < 1e-12


@pytest.mark.parametrize(("norm_cfg", "expected"), [
    ({"type": "SyncBatchNorm"}, torch.nn.BatchNorm1d),
    ({"type": "BatchNorm2d", "momentum": 0.2}, torch.nn.BatchNorm1d),
    ({"type": "InstanceNorm2d", "affine": True}, torch.nn.InstanceNorm1d),
    ({"type": "GroupNorm", "num_groups": 2}, torch.nn.GroupNorm),
])
def test_context_encoding_norm_is_the_1d_version_of_norm_cfg(norm_cfg, expected):
    module = ContextEncoding(16, 4, norm_cfg=norm_cfg, act_cfg={"type": "ReLU"})
    norm = module.encoding[1]
    assert type(norm) is expected
    encoded, out = module.train()(torch.randn(2, 16, 5, 5))
    assert encoded.shape == (2, 16) and out.shape == (2, 16, 5, 5)
    if norm_cfg.get("momentum"):
        assert norm.momentum == 0.2


def test_class_presence_target_equals_ssseg_histc():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (3, 9, 9), generator=generator)
    labels[0, :4] = -100
    labels[1, 2] = 255
    labels[2] = torch.where(labels[2] == 3, torch.full_like(labels[2], -100), labels[2])
    num_classes = 6
    reference = labels.new_zeros((3, num_classes))  # ENCNet.onehot in SSSegmentation's encnet.py
    for i in range(3):
        reference[i] = labels[i].float().histc(bins=num_classes, min=0, max=num_classes - 1) > 0
    target = class_presence({"seg_target": labels}, {}, num_classes=num_classes, ignore_index=-100)
    assert target.dtype == torch.float32 and torch.equal(target, reference.float())
    assert target[2, 3] == 0


def test_encnet_training_outputs_se_and_eval_only_out():
    torch.manual_seed(0)
    recipe = make_recipe(type="ENCNet", backbone={**TINY_BACKBONE, "selected_indices": [1, 2, 3]},
                         head={"feats_channels": 16, "num_codes": 8},
                         losses={"loss_cls": {"type": "CrossEntropyLoss"},
                                 "loss_aux": {"type": "CrossEntropyLoss", "scale_factor": 0.4},
                                 "loss_se": {"type": "CrossEntropyLoss", "use_sigmoid": True, "scale_factor": 0.2}})
    segmentor = build_segmentor(recipe, pretrained=False)
    images, labels = torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    outputs = segmentor.train()(images)
    assert list(outputs) == ["out", "se", "aux"] and outputs["se"].shape == (2, 4)
    criterion = build_criterion(recipe, segmentor)
    losses = criterion(outputs, {"seg_target": labels})
    presence = class_presence({"seg_target": labels}, {}, num_classes=4, ignore_index=-100)
    expected = 0.2 * F.binary_cross_entropy_with_logits(outputs["se"], presence)
    assert torch.allclose(losses["loss_se"], expected)
    assert list(segmentor.eval()(images)) == ["out"]


# ----------------------------------------------------------------------------------------------- CE2P

CE2P_LOSSES = {"loss_cls_stage1": {"type": "CrossEntropyLoss"}, "loss_cls_stage2": {"type": "CrossEntropyLoss"},
               "loss_edge": {"type": "CrossEntropyLoss"}}


def test_ce2p_default_parameter_count_matches_ssseg():
    # SSSeg CE2P_SEGMENTOR_CFG (num_classes 150, LeakyReLU): ppm_net 23,073,792 + edge_net 464,912 + shortcut
    # 12,384 + decoder_stage1 627,862 + decoder_stage2 996,502 = 25,175,452; no auxiliary; total 67,694,844.
    segmentor = _on_meta(type="CE2P", num_classes=150, act_cfg={"type": "LeakyReLU", "negative_slope": 0.01},
                         backbone={**R101, "selected_indices": [0, 1, 2, 3]},
                         head={"in_channels_list": [256, 512, 1024, 2048], "feats_channels": 512,
                               "pool_scales": [1, 2, 3, 6], "epm_hidden_channels": 256, "shortcut_feats_channels": 48,
                               "epm_out_channels": 2, "dropout_stage1": 0.0, "dropout_stage2": 0.1},
                         auxiliary=None, losses=dict(CE2P_LOSSES))
    head = segmentor.head
    assert count_parameters(head.ppm_net) == 23_073_792 and count_parameters(head.edge_net) == 464_912
    assert count_parameters(head) == 25_175_452
    assert segmentor.aux_heads is None and count_parameters(segmentor) == 67_694_844


def _ce2p(losses=None, criterion=None):
    torch.manual_seed(0)
    fields = {"criterion": criterion} if criterion else {}
    recipe = make_recipe(type="CE2P", backbone={**TINY_BACKBONE, "selected_indices": [0, 1, 2, 3]},
                         head={"feats_channels": 16, "epm_hidden_channels": 8, "shortcut_feats_channels": 8},
                         auxiliary=None, losses=losses or dict(CE2P_LOSSES), **fields)
    segmentor = build_segmentor(recipe, pretrained=False)
    return segmentor, build_criterion(recipe, segmentor)


def _edge_batch():
    labels = torch.randint(0, 4, (2, 64, 64), generator=torch.Generator().manual_seed(3))
    edge = torch.zeros_like(labels)
    edge[:, 1:] |= (labels[:, 1:] != labels[:, :-1]).long()
    edge[:, :, 1:] |= (labels[:, :, 1:] != labels[:, :, :-1]).long()
    edge[:, -5:] = -100  # padding
    return labels, edge


def test_ce2p_outputs_routes_and_batch_balanced_edge_loss_equal_sssegs_weights():
    segmentor, criterion = _ce2p()
    images = torch.randn(2, 3, 64, 64)
    labels, edge = _edge_batch()
    outputs = segmentor.train()(images)
    assert list(outputs) == ["out", "stage1", "edge"]
    assert outputs["edge"].shape == (2, 2, 16, 16) and outputs["out"].shape == (2, 4, 16, 16)
    losses = criterion(outputs, {"seg_target": labels, "edge_target": edge})
    assert set(losses) == {"loss_cls_stage1", "loss_cls_stage2", "loss_edge"}
    # SSSeg's ce2p.py: weights [num_pos / n, num_neg / n] from the batch's edge targets, then its CE (mean divided
    # by the sum of the pixels' weights), which is torch's weighted mean
    num_neg, num_pos = (edge == 0).sum().float(), (edge == 1).sum().float()
    weight = torch.stack([num_pos / (num_pos + num_neg), num_neg / (num_pos + num_neg)])
    resized = F.interpolate(outputs["edge"], size=(64, 64), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(resized, edge, weight=weight, ignore_index=-100)
    assert torch.allclose(losses["loss_edge"], expected, rtol=1e-5)
    unweighted = F.cross_entropy(resized, edge, ignore_index=-100)
    assert not torch.allclose(losses["loss_edge"], unweighted, rtol=1e-3)
    stage1 = F.interpolate(outputs["stage1"], size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(losses["loss_cls_stage1"], F.cross_entropy(stage1, labels, ignore_index=-100), rtol=1e-5)
    assert list(segmentor.eval()(images)) == ["out"]


def test_ce2p_edge_weight_default_only_fills_a_missing_class_weight():
    explicit = {**CE2P_LOSSES, "loss_edge": [{"type": "CrossEntropyLoss", "class_weight": [1.0, 3.0]},
                                             {"type": "CrossEntropyLoss", "scale_factor": 0.5}]}
    _, criterion = _ce2p(losses=explicit)
    first, second = criterion.terms["loss_edge"]
    assert first.loss.class_weight.tolist() == [1.0, 3.0] and not first.loss.batch_balanced
    assert second.loss.batch_balanced
    assert not any(t.loss.batch_balanced for t in criterion.terms["loss_cls_stage2"])
    _, dense = _ce2p(criterion={"type": "DenseCriterion"})  # opting out: SSSeg-unlike unweighted edge loss
    assert not dense.terms["loss_edge"][0].loss.batch_balanced
    assert balanced_edge_losses({"loss_edge": {"type": "DiceLoss"}}) == {"loss_edge": {"type": "DiceLoss"}}


def test_ce2p_needs_an_edge_target():
    segmentor, criterion = _ce2p()
    outputs = segmentor.train()(torch.randn(2, 3, 64, 64))
    with pytest.raises(SegkitError, match="EdgeExtractor"):
        criterion(outputs, {"seg_target": torch.zeros(2, 64, 64, dtype=torch.long)})


# ----------------------------------------------------------------------------------------------- ISNet

ISNET_LOSSES = {"loss_cls_stage1": {"type": "CrossEntropyLoss", "scale_factor": 0.4},
                "loss_cls_stage2": {"type": "CrossEntropyLoss"},
                "loss_aux": {"type": "CrossEntropyLoss", "scale_factor": 0.4}}


@pytest.mark.parametrize("shortcut_on", [False, True])
def test_isnet_default_parameter_count_matches_ssseg(shortcut_on):
    # SSSeg ISNET_SEGMENTOR_CFG (num_classes 150): bottleneck 9,438,208 + ilc_net 5,640,704 + slc_net 5,378,560 +
    # decoder_stage1 340,118 + decoder_stage2 76,950 = 20,874,540; auxiliary_decoder 4,796,566; total 68,190,498.
    # shortcut.is_on (its LIP configs): shortcut 12,432, decoder_stage2 364,694: 21,174,716, total 68,490,674.
    head = {"feats_channels": 512, "transform_channels": 256, "concat_input": True, "dropout": 0.1,
            "shortcut": {"is_on": shortcut_on, "in_channels": 256, "feats_channels": 48}}
    segmentor = _on_meta(type="ISNet", num_classes=150, backbone={**R101, "selected_indices": [0, 1, 2, 3]},
                         head={"in_channels": 2048, **head}, auxiliary={"out_channels": 512, "dropout": 0.1},
                         losses=dict(ISNET_LOSSES))
    expected = 21_174_716 if shortcut_on else 20_874_540
    assert count_parameters(segmentor.head.ilc_net) == 5_640_704
    assert count_parameters(segmentor.head.slc_net) == 5_378_560
    assert count_parameters(segmentor.head) == expected
    assert count_parameters(segmentor) == expected + 4_796_566 + 42_519_392


def loop_class_centres(x, preds):
    """SSSegmentation's SemanticLevelContext loop: per image, per present class, softmax-weighted region mean."""
    batch, channels, height, width = x.shape
    out = torch.zeros(batch, height * width, channels, dtype=x.dtype)
    for b in range(batch):
        feats, logits = x[b].reshape(channels, -1).t(), preds[b].reshape(preds.size(1), -1).t()
        argmax = logits.argmax(1)
        for k in range(preds.size(1)):
            mask = argmax == k
            if mask.sum() == 0:
                continue
            weight = torch.softmax(logits[:, k][mask], dim=0)
            out[b][mask] = (feats[mask] * weight.unsqueeze(-1)).sum(0)
    return out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def test_class_centres_match_the_loop_reference_values_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 5, 7, dtype=torch.double, requires_grad=True)
    preds = torch.randn(3, 5, 5, 7, dtype=torch.double)
    preds[:, 4] -= 10  # class 4 is nowhere the argmax: an empty region
    preds[1, 2] += 20  # image 1: one region only
    preds.requires_grad_(True)
    fast, slow = class_centres(x, preds), loop_class_centres(x, preds)
    assert (fast - slow).abs().max() < 1e-12
    weight = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * weight).sum(), [x, preds])
    grads_slow = torch.autograd.grad((slow * weight).sum(), [x, preds])
    assert max((a - b).abs().max().item() for a, b in zip(grads_fast, grads_slow, strict=True)) < 1e-12
    assert torch.isfinite(grads_fast[1]).all()


def test_isnet_outputs_and_routes():
    torch.manual_seed(0)
    recipe = make_recipe(type="ISNet", backbone={**TINY_BACKBONE, "selected_indices": [0, 1, 2, 3]},
                         head={"feats_channels": 16, "transform_channels": 8,
                               "shortcut": {"is_on": True, "feats_channels": 8}},
                         losses=dict(ISNET_LOSSES))
    segmentor = build_segmentor(recipe, pretrained=False)
    assert segmentor.exportable
    assert segmentor.head.shortcut[0].in_channels == 8  # derived from the first selected map
    images, labels = torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    outputs = segmentor.train()(images)
    assert list(outputs) == ["out", "stage1", "aux"]
    assert outputs["out"].shape == (2, 4, 16, 16) and outputs["stage1"].shape == (2, 4, 8, 8)
    losses = build_criterion(recipe, segmentor)(outputs, {"seg_target": labels})
    stage1 = F.interpolate(outputs["stage1"], size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(losses["loss_cls_stage1"], 0.4 * F.cross_entropy(stage1, labels), rtol=1e-5)
    assert list(segmentor.eval()(images)) == ["out"]


def test_isnet_shortcut_table_is_checked_with_its_path():
    recipe = make_recipe(type="ISNet", backbone={**TINY_BACKBONE, "selected_indices": [0, 1, 2, 3]},
                         head={"feats_channels": 16, "transform_channels": 8, "shortcut": {"is_onn": True}},
                         losses=dict(ISNET_LOSSES))
    with pytest.raises(RecipeError, match=r"head\.shortcut\.is_onn"):
        build_segmentor(recipe, pretrained=False)
    recipe.head["shortcut"] = {"is_on": True, "in_channels": 256}
    with pytest.raises(RecipeError, match=r"head\.shortcut\.in_channels"):
        build_segmentor(recipe, pretrained=False)


def test_isnet_without_concat_input_skips_the_unused_image_level_context():
    torch.manual_seed(0)
    recipe = make_recipe(type="ISNet", head={"feats_channels": 16, "transform_channels": 8, "concat_input": False},
                         losses=dict(ISNET_LOSSES))
    segmentor = build_segmentor(recipe, pretrained=False).eval()
    calls = []
    segmentor.head.ilc_net.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        segmentor(torch.randn(1, 3, 64, 64))
    assert not calls and count_parameters(segmentor.head.ilc_net) > 0
