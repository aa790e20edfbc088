"""PointRend, ICNet, MCIBI, MCIBIPlusPlus and IDRNet: SSSegmentation parameter counts, shapes and behaviour.

The SSSegmentation numbers were obtained by building SSSegmentation 1.7.0's own segmentor classes from its configs
(``ssseg/configs/<dir>/<config>.py``, backbone ``pretrained=False``) and counting ``model.parameters()`` (SSSeg keeps
the MCIBI/MCIBI++/IDRNet state as frozen parameters, so it is counted, here too). The segkit side is built on the meta
device from the converted recipe of the same config (``recipes/<dir>/<config>.toml``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from segkit.models.build import ModelBuilder, build_criterion, segmentor_class
from segkit.models.losses.targets import point_labels
from segkit.recipe import load_recipe

from .helpers import count_parameters
from .test_registry_models import small_recipe, synthetic_batch

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

SSSEG_PARAMETERS = {
    "pointrend/pointrend_resnet50os32_ade20k": 28_891_248,
    "pointrend/pointrend_resnet50os32_voc": 28_720_323,
    "pointrend/pointrend_resnet101os32_cityscapes": 47_710_063,
    "icnet/icnet_resnet50os8_cityscapes": 47_827_833,
    "icnet/icnet_resnet101os8_cityscapes": 66_819_961,
    "mcibi/mcibi_deeplabv3_resnet50os8_ade20k": 91_487_522,
    "mcibi/mcibi_deeplabv3_resnet101os8_cocostuff10k": 110_545_282,
    "mcibi/mcibi_deeplabv3_resnest101os8_lip": 113_919_644,
    "mcibi/mcibi_deeplabv3_hrnetv2w48_ade20k": 102_651_244,  # SSSeg's HRModule needs use_checkpoint set first
    "mcibi/mcibi_deeplabv3_hrnetv2w48_cityscapes": 107_116_806,  # + the shared stride-2 conv (downsample_backbone)
    "mcibi/mcibi_deeplabv3_vitlarge_ade20k": 368_867_054,  # + per-level LayerNorms (head.norm_cfg)
    "mcibiplusplus/mcibiplusplus_resnet50os8_lip": 43_620_804,
    "mcibiplusplus/mcibiplusplus_ppm_resnet50os8_ade20k": 68_156_132,
    "mcibiplusplus/mcibiplusplus_aspp_resnet101os8_cityscapes": 110_211_026,
    "mcibiplusplus/mcibiplusplus_aspp_hrnetv2w48_lip": 104_152_740,  # downsample_before_sa
    "mcibiplusplus/mcibiplusplus_upernet_resnet50os8_ade20k": 94_769_380,
    "mcibiplusplus/mcibiplusplus_upernet_swinlarge_ade20k": 274_639_928,  # + self-attention on the context
    "idrnet/idrnet_fcn_resnet50os8_lip": 41_140_432,
    "idrnet/idrnet_ppm_resnet50os8_cocostuff10k": 55_309_568,
    "idrnet/idrnet_aspp_resnet50os8_cityscapes": 61_464_190,
    "idrnet/idrnet_upernet_resnet50os8_ade20k": 70_565_248,
    "idrnet/idrnet_upernet_swinlarge_ade20k": 305_232_596,
}
"""``sum(p.numel() for p in model.parameters())`` of SSSegmentation 1.7.0's segmentor built from each config."""


def meta_segmentor(recipe):
    """The segmentor of ``recipe`` built on the meta device (no memory, no weights)."""
    return segmentor_class(recipe).from_recipe(ModelBuilder(recipe, pretrained=False, probe=True))


def build(recipe):
    torch.manual_seed(0)
    return segmentor_class(recipe).from_recipe(ModelBuilder(recipe, pretrained=False))


@pytest.mark.parametrize("config", sorted(SSSEG_PARAMETERS))
def test_parameter_count_matches_ssseg(config):
    recipe = load_recipe(RECIPES / f"{config}.toml", check_components=False)
    assert count_parameters(meta_segmentor(recipe)) == SSSEG_PARAMETERS[config]


# ----------------------------------------------------------------------------------------------- ICNet


def test_icnet_encoder_branches_neck_outputs_and_aux_inputs():
    recipe, _ = small_recipe("ICNet")
    segmentor = build(recipe)
    encoder = segmentor.backbone
    assert encoder.backbone_net.maxpool.ceil_mode
    x = torch.randn(2, 3, 64, 96)
    sub1, sub2, sub4 = encoder(x)
    # the half image (32 x 48) -> stem (16 x 24) -> ceil-mode maxpool (9 x 13) -> layer2 (5 x 7) -> halved (2 x 3)
    assert sub1.shape == (2, 8, 8, 12) and sub2.shape == (2, 16, 5, 7) and sub4.shape == (2, 16, 2, 3)
    assert [i["reduction"] for i in encoder.feature_info] == [8, 16, 32]
    x_24, x_12, x_cff_12 = segmentor.extract_features(x)
    assert x_24.shape == (2, 16, 5, 7) and x_12.shape == x_cff_12.shape == (2, 16, 8, 12)
    # the aux heads read the neck's x_24 and x_12 (SSSeg's features[:-1][-2:]), the head x_cff_12
    assert [head.in_index for head in segmentor.aux_heads] == [-3, -2] and segmentor.head.in_index == -1
    segmentor.train()
    outputs = segmentor(x)
    assert list(outputs) == ["out", "aux1", "aux2"]
    assert outputs["aux1"].shape[2:] == (5, 7) and outputs["out"].shape[2:] == (8, 12)


def test_icnet_converts_an_ssseg_state_dict():
    """SSSeg's layout (flat conv/norm/act Sequentials in the encoder, neck and decoder), made from a model's own
    tensors: every tensor lands where it came from."""
    import re

    from segkit.models.ssseg_checkpoint import convert_ssseg_state_dict

    recipe, _ = small_recipe("ICNet")
    segmentor = build(recipe)
    rules = [  # segkit name -> SSSeg name
        (r"^backbone\.conv_sub1\.(\d)\.conv\.", lambda m: f"backbone_net.conv_sub1.{3 * int(m[1])}."),
        (r"^backbone\.conv_sub1\.(\d)\.norm\.", lambda m: f"backbone_net.conv_sub1.{3 * int(m[1]) + 1}."),
        (r"^backbone\.(conv_sub[24])\.conv\.", lambda m: f"backbone_net.{m[1]}.0."),
        (r"^backbone\.(conv_sub[24])\.norm\.", lambda m: f"backbone_net.{m[1]}.1."),
        (r"^backbone\.ppm_net\.branches\.(\d)\.1\.conv\.", lambda m: f"backbone_net.ppm_net.branches.{m[1]}.1."),
        (r"^backbone\.ppm_net\.branches\.(\d)\.1\.norm\.", lambda m: f"backbone_net.ppm_net.branches.{m[1]}.2."),
        (r"^backbone\.ppm_net\.bottleneck\.conv\.", lambda m: "backbone_net.ppm_net.bottleneck.0."),
        (r"^backbone\.ppm_net\.bottleneck\.norm\.", lambda m: "backbone_net.ppm_net.bottleneck.1."),
        (r"^backbone\.", lambda m: "backbone_net."),
        (r"^neck\.(cff_\d+)\.(conv_\w+)\.conv\.", lambda m: f"neck.{m[1]}.{m[2]}.0."),
        (r"^neck\.(cff_\d+)\.(conv_\w+)\.norm\.", lambda m: f"neck.{m[1]}.{m[2]}.1."),
        (r"^head\.convs\.0\.conv\.", lambda m: "decoder.0."),
        (r"^head\.convs\.0\.norm\.", lambda m: "decoder.1."),
        (r"^head\.classifier\.", lambda m: "decoder.4."),
        (r"^aux_heads\.(\d)\.convs\.0\.conv\.", lambda m: f"auxiliary_decoder.{m[1]}.0."),
        (r"^aux_heads\.(\d)\.convs\.0\.norm\.", lambda m: f"auxiliary_decoder.{m[1]}.1."),
        (r"^aux_heads\.(\d)\.classifier\.", lambda m: f"auxiliary_decoder.{m[1]}.4."),
    ]

    def ssseg_name(key: str) -> str:
        for pattern, replace in rules:
            renamed, count = re.subn(pattern, replace, key)
            if count:
                return renamed
        raise AssertionError(key)

    original = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in segmentor.state_dict().items()}
    ssseg = {ssseg_name(k): v for k, v in original.items()}
    assert any(k.startswith("backbone_net.conv_sub1.7.") for k in ssseg)
    # SSSeg's ResNet registers each block's downsample first: its tensors are in another order (names agree)
    resnet = [k for k in ssseg if k.startswith("backbone_net.backbone_net.")]
    ssseg = {**{k: ssseg[k] for k in reversed(resnet)}, **{k: v for k, v in ssseg.items() if k not in resnet}}
    converted = convert_ssseg_state_dict(ssseg, segmentor)
    assert all(torch.equal(converted[k], v) for k, v in original.items())


def test_icnet_rejects_channels_that_do_not_match_the_encoder():
    from segkit.errors import RecipeError

    recipe, _ = small_recipe("ICNet")
    recipe.head["in_channels_list"] = [8, 16, 32]
    with pytest.raises(RecipeError, match="head.in_channels_list"):
        meta_segmentor(recipe)
    recipe, _ = small_recipe("ICNet")
    recipe.head["encoder"]["layer_channels_list"] = [512, 2048]
    with pytest.raises(RecipeError, match="head.encoder"):
        meta_segmentor(recipe)


# ----------------------------------------------------------------------------------------------- PointRend


def test_pointrend_training_outputs_points_and_point_labels():
    recipe, size = small_recipe("PointRend")
    segmentor = build(recipe).train()
    images, labels = synthetic_batch(2, size, recipe.num_classes)
    outputs = segmentor(images)
    assert list(outputs) == ["out", "points", "aux"] == segmentor.output_names(training=True)
    assert outputs["out"].shape == (2, recipe.num_classes, 64)
    assert outputs["points"].shape == (2, 64, 2) and 0 <= outputs["points"].min() and outputs["points"].max() <= 1
    assert outputs["aux"].shape == (2, recipe.num_classes, size // 4, size // 4)
    # point labels: the label of the pixel each point falls in (nearest), as SSSeg's point_sample(mode='nearest')
    target = point_labels({"seg_target": labels}, outputs, num_classes=recipe.num_classes, ignore_index=-100)
    points = outputs["points"]
    cols = (points[..., 0] * size).floor().long().clamp(max=size - 1)
    rows = (points[..., 1] * size).floor().long().clamp(max=size - 1)
    expected = torch.stack([labels[b, rows[b], cols[b]] for b in range(2)])
    assert torch.equal(target, expected)
    losses = build_criterion(recipe, segmentor)(outputs, {"seg_target": labels})
    assert set(losses) == {"loss_cls", "loss_aux"}


def test_pointrend_training_points_favour_uncertain_regions():
    from segkit.models.heads.pointrend import top2_uncertainty

    recipe, size = small_recipe("PointRend")
    segmentor = build(recipe).train()
    head = segmentor.head
    torch.manual_seed(1)
    images, _ = synthetic_batch(1, size, recipe.num_classes)
    outputs = segmentor(images)
    coarse = outputs["aux"].detach()
    sampled = F.grid_sample(coarse, outputs["points"].unsqueeze(2) * 2 - 1, align_corners=False)  # [1, K, P, 1]
    uncertainty = top2_uncertainty(sampled).flatten()
    important = int(head.train_cfg["importance_sample_ratio"] * head.train_cfg["num_points"])
    # the importance-sampled points come first, sorted from most to least uncertain
    assert torch.all(uncertainty[:important - 1] >= uncertainty[1:important] - 1e-6)
    assert uncertainty[:important].mean() > uncertainty.flatten().mean() - 1e-6


def test_pointrend_eval_subdivision_rewrites_only_the_most_uncertain_cells():
    recipe, size = small_recipe("PointRend")
    recipe.head["test"] = {"subdivision_steps": 1, "subdivision_num_points": 40, "scale_factor": 2}
    segmentor = build(recipe).eval()
    images, _ = synthetic_batch(2, size, recipe.num_classes)
    with torch.no_grad():
        features = segmentor.extract_features(images)
        coarse, fine = segmentor.head.coarse(features)
        refined = segmentor(images)["out"]
    upsampled = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
    assert refined.shape == (2, recipe.num_classes, size // 2, size // 2)
    changed = (refined != upsampled).any(dim=1).flatten(1).sum(dim=1)
    assert (changed <= 40).all() and (changed > 0).all()
    # two steps (SSSeg's default) bring the stride-4 coarse map to the input resolution
    recipe, _ = small_recipe("PointRend")
    segmentor = build(recipe).eval()
    with torch.no_grad():
        out = segmentor(images)["out"]
        assert out.shape == (2, recipe.num_classes, size, size)
        # in float64 too (the test points are float32, as in SSSeg): the same logits, in float64
        double = segmentor.double()(images.double())["out"]
    assert double.dtype == torch.float64 and torch.allclose(double.float(), out, rtol=1e-4, atol=1e-4)


def test_pointrend_needs_one_auxiliary_table():
    from segkit.errors import RecipeError

    recipe, _ = small_recipe("PointRend")
    recipe.auxiliary = [recipe.auxiliary]
    with pytest.raises(RecipeError, match="auxiliary"):
        meta_segmentor(recipe)
    recipe, _ = small_recipe("PointRend")
    recipe.head["pointrend_in_channels_list"] = [256]
    with pytest.raises(RecipeError, match="head.pointrend_in_channels_list"):
        meta_segmentor(recipe)


# ----------------------------------------------------------------------------------------------- MCIBI


def reference_memory_update(memory, features, segmentation, momentum, ignore_index=-100,
                            strategy="cosine_similarity"):
    """SSSegmentation's ``FeaturesMemory.update`` written as its per-class loop (single process)."""
    memory = memory.clone()
    num_classes, n, channels = memory.shape
    feats = features.permute(0, 2, 3, 1).reshape(-1, channels)
    seg = segmentation.reshape(-1)
    for clsid in seg.unique().tolist():
        if clsid == ignore_index:
            continue
        feats_cls = feats[seg == clsid]
        initialised = False
        for idx in range(n):
            if (memory[clsid, idx] == 0).sum() == channels:
                memory[clsid, idx] = feats_cls.mean(0)
                initialised = True
                break
        if initialised:
            continue
        if n == 1:
            if strategy == "mean":
                new = feats_cls.mean(0)
            else:
                similarity = F.cosine_similarity(feats_cls, memory[clsid].expand_as(feats_cls))
                weight = (1 - similarity) / (1 - similarity).sum()
                new = (feats_cls * weight.unsqueeze(-1)).sum(0)
            memory[clsid, 0] = (1 - momentum) * memory[clsid, 0] + momentum * new
            continue
        relation = F.normalize(feats_cls, p=2, dim=1) @ F.normalize(memory[clsid].t(), p=2, dim=0)
        argmax = relation.argmax(dim=1)
        for idx in range(n):
            feats_iter = feats_cls[argmax == idx]
            similarity = F.cosine_similarity(feats_iter, memory[clsid, idx].unsqueeze(0).expand_as(feats_iter))
            weight = (1 - similarity) / (1 - similarity).sum()
            new = (feats_iter * weight.unsqueeze(-1)).sum(0)
            memory[clsid, idx] = memory[clsid, idx] * (1 - momentum) + new * momentum
    return memory


@pytest.mark.parametrize(("n", "strategy"), [(1, "cosine_similarity"), (1, "mean"), (3, "cosine_similarity")])
def test_mcibi_memory_update_matches_the_per_class_loop(n, strategy):
    from segkit.models.layers.memory import FeaturesMemory

    generator = torch.Generator().manual_seed(n)
    module = FeaturesMemory(6, 8, 4, 8, num_feats_per_cls=n).double()
    start = torch.randn(6, n, 8, generator=generator, dtype=torch.float64)
    start[1] = 0  # never written: initialised with the class mean
    start[2, -1] = 0  # one vector still empty (n > 1: it gets the mean, the others stay)
    module.memory.data.copy_(start)
    features = torch.randn(2, 8, 10, 12, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 10, 12), generator=generator)  # class 5 absent
    labels[:, :2] = -100
    parameter = module.memory
    module.update(features, labels, momentum=0.3, strategy=strategy)
    expected = reference_memory_update(start, features, labels, 0.3, strategy=strategy)
    torch.testing.assert_close(module.memory.data, expected, rtol=1e-10, atol=1e-10)
    assert module.memory is parameter and not parameter.requires_grad  # updated in place, never replaced
    assert torch.equal(module.memory.data[5], start[5])


def test_mcibi_memory_loss_from_epoch_two_and_ssseg_loss_cfg():
    from segkit.errors import RecipeError

    recipe, size = small_recipe("MCIBI")
    segmentor = build(recipe).train()
    images, labels = synthetic_batch(2, size, recipe.num_classes)
    targets = {"seg_target": labels}
    criterion = build_criterion(recipe, segmentor)  # head.loss_cfg (SSSeg's layout) becomes losses.loss_memory
    assert "loss_memory" in criterion.terms
    memory = segmentor.head.memory_module.memory
    segmentor.set_progress(epoch=1, iteration=0, lr=0.003, max_epochs=2, max_iters=2)
    outputs = segmentor(images, targets)
    assert "memory" not in outputs and "loss_memory" not in criterion(outputs, targets)
    assert memory.abs().sum() > 0  # the first step initialises the memory of the classes present
    segmentor.set_progress(epoch=2, iteration=1, lr=0.003, max_epochs=2, max_iters=2)
    outputs = segmentor(images, targets)
    assert outputs["memory"].shape == (recipe.num_classes, recipe.num_classes)
    losses = criterion(outputs, targets)
    torch.testing.assert_close(losses["loss_memory"], F.cross_entropy(outputs["memory"], torch.arange(4)))
    losses["loss_memory"].backward()
    assert segmentor.head.decoder_stage2[2].weight.grad is not None and memory.grad is None
    assert segmentor.head.memory_module.memory is memory
    recipe.losses["loss_memory"] = {"type": "CrossEntropyLoss"}
    with pytest.raises(RecipeError, match="head.loss_cfg"):
        build_criterion(recipe, segmentor)


def test_mcibi_momentum_follows_the_learning_rate():
    from segkit.models.layers.memory import momentum_at

    cfg = {"base_momentum": 0.9, "base_lr": 0.01, "adjust_by_learning_rate": True}
    assert momentum_at(cfg, 0.005) == pytest.approx(0.45)
    assert momentum_at(cfg, None) == 0.9
    assert momentum_at({**cfg, "adjust_by_learning_rate": False}, 0.005) == 0.9


def test_mcibi_eval_reads_the_memory_without_changing_it():
    recipe, size = small_recipe("MCIBI/ppm_multi")
    segmentor = build(recipe)
    memory = segmentor.head.memory_module.memory
    memory.data.normal_()
    before = memory.detach().clone()
    images, _ = synthetic_batch(2, size, recipe.num_classes)
    with torch.no_grad():
        out = segmentor.eval()(images)
    assert list(out) == ["out"] and out["out"].shape == (2, recipe.num_classes, size // 8, size // 8)
    assert torch.equal(memory, before)
    assert segmentor.output_names(training=True) == ["out", "stage1", "aux", "memory"]


# ----------------------------------------------------------------------------------------------- MCIBI++


def test_mcibiplusplus_memory_draws_are_sssegs_without_reseeding_the_global_rng():
    from segkit.models.layers.memory_v2 import FeaturesMemoryV2

    module = FeaturesMemoryV2(5, 24, 8, 24)
    module.memory.data.copy_(torch.tensor([[0.1, 1.0], [-2.0, 0.5], [0.0, 2.0], [3.0, 0.1], [0.7, 0.7]]))
    with torch.random.fork_rng():
        expected = []
        for index in range(5):  # SSSeg's FeaturesMemoryV2.forward
            torch.manual_seed(index)
            mean, std = module.memory.data[index]
            expected.append(torch.normal(mean=torch.full((1, 24), float(mean)), std=torch.full((1, 24), float(std))))
    assert torch.equal(module.sampled_memory(), torch.cat(expected))
    assert "noise" not in module.state_dict() and "noise" in dict(module.named_buffers())
    recipe, size = small_recipe("MCIBIPlusPlus/upernet")
    segmentor = build(recipe).train()
    images, labels = synthetic_batch(2, size, recipe.num_classes)
    after = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        segmentor(images, {"seg_target": labels})
        after.append(torch.rand(4))
    assert not torch.equal(after[0], after[1])  # SSSeg's forward leaves the global RNG at manual_seed(K - 1)


def test_mcibiplusplus_memory_update_matches_the_per_class_loop():
    from segkit.models.layers.memory_v2 import FeaturesMemoryV2

    generator = torch.Generator().manual_seed(0)
    module = FeaturesMemoryV2(6, 8, 4, 8).double()
    start = torch.rand(6, 2, generator=generator, dtype=torch.float64)
    module.memory.data.copy_(start)
    features = torch.randn(2, 8, 10, 12, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 10, 12), generator=generator)
    labels[:, :2] = -100
    parameter = module.memory
    module.update(features, labels, momentum=0.1)
    expected = start.clone()
    feats = features.permute(0, 2, 3, 1).reshape(-1, 8)
    for clsid in labels.unique().tolist():  # SSSeg's FeaturesMemoryV2.update
        if clsid == -100:
            continue
        class_mean = feats[labels.reshape(-1) == clsid].mean(0)
        expected[clsid, 0] = 0.9 * expected[clsid, 0] + 0.1 * class_mean.mean()
        expected[clsid, 1] = 0.9 * expected[clsid, 1] + 0.1 * class_mean.std()
    torch.testing.assert_close(module.memory.data, expected, rtol=1e-10, atol=1e-10)
    assert module.memory is parameter and not parameter.requires_grad


def test_mcibiplusplus_outputs_and_warmup_reads_the_ground_truth():
    from segkit.models.segmentors.mcibiplusplus import one_hot_logits

    recipe, size = small_recipe("MCIBIPlusPlus/upernet")
    recipe.head["warmup_epoch"] = 2
    segmentor = build(recipe).train()
    assert segmentor.output_names(training=True) == ["out", "pr", "cwi", "aux"]
    images, labels = synthetic_batch(2, size, recipe.num_classes)
    seen = []
    original = segmentor.head.memory_module.forward
    segmentor.head.memory_module.forward = lambda feats, preds: seen.append(preds) or original(feats, preds)
    segmentor.set_progress(epoch=1, iteration=0, lr=0.01, max_epochs=3, max_iters=3)
    outputs = segmentor(images, {"seg_target": labels})
    assert list(outputs) == ["out", "pr", "cwi", "aux"]
    expected = one_hot_logits(labels, seen[0].shape[2:], recipe.num_classes, seen[0])
    assert torch.equal(seen[0], expected) and torch.equal(expected.sum(1), torch.ones_like(expected[:, 0]))
    segmentor.set_progress(epoch=2, iteration=1, lr=0.01, max_epochs=3, max_iters=3)
    segmentor(images, {"seg_target": labels})
    assert not torch.equal(seen[1], one_hot_logits(labels, seen[1].shape[2:], recipe.num_classes, seen[1]))


# ----------------------------------------------------------------------------------------------- IDRNet


def reference_obtainidcontext(context, logits, relations, intervention=None, remove_negative=True):
    """SSSegmentation's ``IDRNet.obtainidcontext``: per image, per class, in Python loops."""
    batch, channels, height, width = context.shape
    num_classes = logits.shape[1]
    id_context_batch, valid_batch = torch.zeros_like(context), []
    for b in range(batch):
        context_iter = context[b].reshape(channels, -1).t()
        logits_iter = logits[b].reshape(num_classes, -1)
        argmax = logits_iter.argmax(0)
        valid, contexts, selected = [], [], []
        for clsid in range(num_classes):
            if intervention is not None and clsid == intervention[b]:
                continue
            mask = argmax == clsid
            if mask.sum() == 0:
                continue
            weight = F.softmax(logits_iter[clsid][mask], dim=0)
            valid.append(clsid)
            contexts.append((context_iter[mask] * weight.unsqueeze(-1)).sum(0))
            selected.append(relations[:, clsid].unsqueeze(1))
        if not contexts:
            continue
        valid_batch.append(valid)
        selected = torch.cat(selected, dim=1).clone()
        if remove_negative:
            selected[selected <= 0] = -1e16
        selected = F.softmax(selected, dim=1)
        mixed = torch.stack([selected[clsid] for clsid in valid]) @ torch.stack(contexts)
        out = torch.zeros(height * width, channels, dtype=context.dtype)
        for index, clsid in enumerate(valid):
            out[argmax == clsid] = mixed[index]
        id_context_batch[b] = out.t().reshape(channels, height, width)
    return id_context_batch, valid_batch


@pytest.mark.parametrize("remove_negative", [True, False])
@pytest.mark.parametrize("with_intervention", [False, True])
def test_idrnet_context_matches_the_per_class_loop(remove_negative, with_intervention):
    from segkit.models.heads.idrnet_ops import intervention_context

    generator = torch.Generator().manual_seed(int(remove_negative) + 2 * int(with_intervention))
    context = torch.randn(3, 6, 7, 9, generator=generator, dtype=torch.float64)
    logits = torch.randn(3, 5, 7, 9, generator=generator, dtype=torch.float64) * 2
    logits[2, 4] += 10  # image 2: one class everywhere
    relations = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    intervention = torch.tensor([0, 3, 1]) if with_intervention else None
    got, present = intervention_context(context, logits, relations.float(), intervention, remove_negative)
    expected, valid = reference_obtainidcontext(context, logits, relations.float().double(), intervention,
                                                remove_negative)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert [torch.nonzero(row).flatten().tolist() for row in present if row.any()] == valid


def test_idrnet_dl_insertion_and_class_statistics_match_the_loops():
    from segkit.models.heads.idrnet_ops import (
        class_feature_means,
        class_loss_statistics,
        insert_dl_representations,
    )

    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 4, 5, 6, generator=generator)
    logits = torch.randn(2, 3, 5, 6, generator=generator)
    representations = torch.randn(3, 4, generator=generator)
    inserted = insert_dl_representations(feats, logits, representations)
    argmax = logits.argmax(1)
    assert torch.equal(inserted[:, :4], feats)
    assert torch.equal(inserted[:, 4:], representations[argmax].permute(0, 3, 1, 2))
    target = torch.randint(0, 3, (5, 6), generator=generator)
    target[0] = -100
    counts, means, variances = class_loss_statistics(logits[0], target, 3, -100)
    for clsid in range(3):
        mask = target == clsid
        loss = F.cross_entropy(logits[0].permute(1, 2, 0)[mask], target[mask], reduction="none")
        assert counts[clsid] == mask.sum()
        torch.testing.assert_close(means[clsid], loss.mean())
        torch.testing.assert_close(variances[clsid], loss.var(unbiased=False))
    labels = torch.randint(0, 2, (2, 10, 12), generator=generator)  # class 2 absent
    counts, means = class_feature_means(feats, labels, 3, -100)
    upsampled = F.interpolate(feats, size=(10, 12), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    for clsid in range(2):
        torch.testing.assert_close(means[clsid], upsampled[labels == clsid].mean(0))
    assert counts[2] == 0


def test_idrnet_replays_dropout_and_leaves_the_global_rng_alone():
    from segkit.models.segmentors.idrnet import replay_rng

    dropout = torch.nn.Dropout2d(0.5).train()
    x = torch.ones(2, 8, 3, 3)
    state = torch.get_rng_state()
    first = replay_rng(1234, x.device, lambda: dropout(x))
    second = replay_rng(1234, x.device, lambda: dropout(x))
    assert torch.equal(first, second) and torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(first, replay_rng(99, x.device, lambda: dropout(x)))


def test_idrnet_training_step_updates_its_state_in_place():
    recipe, size = small_recipe("IDRNet/upernet")
    segmentor = build(recipe).train()
    head = segmentor.head
    names = ("class_relations_mean", "class_relations_var", "selected_classes_counter", "dl_cls_representations")
    parameters = {name: getattr(head, name) for name in names}
    before = {name: p.detach().clone() for name, p in parameters.items()}
    images, labels = synthetic_batch(2, size, recipe.num_classes)
    outputs = segmentor(images, {"seg_target": labels})
    assert list(outputs) == ["out", "stage1", "aux"]
    assert all(getattr(head, name) is parameter and not parameter.requires_grad
               for name, parameter in parameters.items())
    counter = head.selected_classes_counter.detach()
    assert torch.isclose((counter - before["selected_classes_counter"]).sum(), torch.tensor(2.0))
    chosen = torch.nonzero(counter > before["selected_classes_counter"]).flatten()
    changed_rows = torch.nonzero((head.class_relations_mean != before["class_relations_mean"]).any(1)).flatten()
    assert set(changed_rows.tolist()) <= set(chosen.tolist()) and len(changed_rows) > 0
    present = labels.unique()
    changed = (head.dl_cls_representations != before["dl_cls_representations"]).any(1)
    assert torch.equal(torch.nonzero(changed).flatten(), present)
    loss = sum(v.float().mean() for v in outputs.values())
    loss.backward()
    assert all(parameter.grad is None for parameter in parameters.values())


# ----------------------------------------------------------------------------------------------- two ranks


def _two_rank_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    import segkit.models  # noqa: F401  (registration)
    from segkit.engine.distributed import all_reduce_mean

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        report = {}
        for name, state in (("MCIBI", ["head.memory_module.memory"]),
                            ("MCIBIPlusPlus", ["head.memory_module.memory"]),
                            ("IDRNet/upernet", ["head.class_relations_mean", "head.class_relations_var",
                                                "head.selected_classes_counter", "head.dl_cls_representations"])):
            recipe, size = small_recipe(name)
            segmentor = build(recipe).train()  # the same seed on both ranks: identical weights and state
            local = copy.deepcopy(segmentor)  # this rank alone (no cross-rank mean)
            segmentor.reduce_mean = all_reduce_mean
            ddp = torch.nn.parallel.DistributedDataParallel(segmentor)
            criterion = build_criterion(recipe, segmentor)
            optimizer = torch.optim.SGD(segmentor.parameters(), lr=0.01, weight_decay=5e-4)
            images, labels = synthetic_batch(2, size, recipe.num_classes, seed=10 + rank)  # different data per rank
            targets = {"seg_target": labels}
            for model in (segmentor, local):
                model.set_progress(epoch=1, iteration=0, lr=0.003, max_epochs=1, max_iters=1)
            torch.manual_seed(100 + rank)
            total = sum(criterion(ddp(images, targets), targets).values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            torch.manual_seed(100 + rank)
            local(images, targets)
            report[name] = {}
            for key in state:
                value, mine = segmentor.get_parameter(key).detach(), local.get_parameter(key).detach()
                gathered, alone = [torch.zeros_like(value) for _ in range(world)], [torch.zeros_like(mine)
                                                                                    for _ in range(world)]
                dist.all_gather(gathered, value)
                dist.all_gather(alone, mine)
                assert torch.equal(gathered[0], gathered[1]), f"{name} {key} differs across ranks"
                assert not torch.equal(alone[0], alone[1]), f"{name} {key}: the ranks saw the same data"
                torch.testing.assert_close(value, torch.stack(alone).mean(0), rtol=1e-5, atol=1e-6)
                report[name][key] = float((gathered[0] - gathered[1]).abs().max())
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def test_state_is_identical_on_two_ranks_after_a_training_step(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_two_rank_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0] == reports[1]
    assert all(diff == 0.0 for model in reports[0].values() for diff in model.values())


@pytest.mark.parametrize("name", ["MCIBI", "MCIBIPlusPlus/upernet", "IDRNet/upernet"])
def test_training_resumes_bit_identically_from_model_optimizer_and_rng_state(name):
    """All randomness goes through the global torch generator (saved in checkpoints): no reseeding, no Python
    ``random``, no generator kept on the model."""
    recipe, size = small_recipe(name)
    images, labels = synthetic_batch(2, size, recipe.num_classes)
    targets = {"seg_target": labels}

    def steps(segmentor, optimizer, criterion, first, count):
        for step in range(first, first + count):
            segmentor.set_progress(epoch=1 + step // 2, iteration=step, lr=0.003, max_epochs=2, max_iters=4)
            total = sum(criterion(segmentor(images, targets), targets).values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()

    def fresh():
        segmentor = build(recipe).train()
        return segmentor, torch.optim.SGD(segmentor.parameters(), lr=0.003, momentum=0.9), \
            build_criterion(recipe, segmentor)

    torch.manual_seed(5)
    segmentor, optimizer, criterion = fresh()
    steps(segmentor, optimizer, criterion, 0, 2)
    checkpoint = copy.deepcopy({"model": segmentor.state_dict(), "optimizer": optimizer.state_dict(),
                                "rng": torch.get_rng_state()})
    steps(segmentor, optimizer, criterion, 2, 2)
    resumed, resumed_optimizer, resumed_criterion = fresh()
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"])
    steps(resumed, resumed_optimizer, resumed_criterion, 2, 2)
    for (key, expected), got in zip(segmentor.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(expected, got), key
