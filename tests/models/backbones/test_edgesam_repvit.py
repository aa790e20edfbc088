"""EdgeSAMRepViT: RepViT m1/m2/m3 trunks have timm's (legacy RepViT) parameter counts, the fused stride-16 output,
EdgeSAM checkpoints (``image_encoder.*``, ``fuse_stage3.op_list``) load."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones.edgesam_repvit import PRETRAINED_URLS, EdgeSAMRepViT, convert_edgesam_checkpoint
from segkit.models.layers import ArgumentError

from ..helpers import count_parameters, images


@pytest.mark.parametrize("arch", ["m1", "m2", "m3"])
def test_trunks_have_the_parameter_counts_of_repvit(arch):
    # RepViT's paper reports classifier models; timm's repvit_m1/m2/m3 (legacy layout, the same blocks) are the
    # reference for the trunk; fuse convs and SAM's neck come on top.
    with torch.device("meta"):
        model = EdgeSAMRepViT(arch=arch)
        reference = timm.create_model(f"repvit_{arch}", num_classes=0)
    trunk = sum(p.numel() for n, p in reference.named_parameters() if n.startswith(("stem", "stages")))
    assert count_parameters(model.features) == trunk
    assert len(model.features) - 1 == len(model.arch_settings[arch]) == {"m1": 26, "m2": 24, "m3": 34}[arch]


def test_fused_output_at_stride_16():
    model = EdgeSAMRepViT(structure_type="edge_sam", arch="m1").eval()
    assert model.stage_idx == [2, 6, 22, 25]
    with torch.no_grad():
        assert model(images(1, 64))[0].shape == (1, 256, 4, 4)
        assert model(images(1, 80))[0].shape == (1, 256, 5, 5)  # stride-32 map (3x3) upsampled to the 5x5 one


def test_an_edgesam_checkpoint_loads_its_image_encoder(tmp_path):
    torch.manual_seed(0)
    source = EdgeSAMRepViT(arch="m1").eval()
    state = {f"image_encoder.{k}".replace("fuse_stage3.0.", "fuse_stage3.op_list.0."): v
             for k, v in source.state_dict().items()}
    state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.zeros(2, 128)
    assert "image_encoder.fuse_stage3.op_list.0.weight" in state
    path = tmp_path / "edge_sam.pth"
    torch.save(state, path)
    model = EdgeSAMRepViT(arch="m1").eval()
    assert model.load_official_weights(str(path)).ok
    torch.testing.assert_close(model.fuse_stage3[0].weight, source.fuse_stage3[0].weight)
    assert set(convert_edgesam_checkpoint(state)) == set(source.state_dict())


def test_structure_type():
    with pytest.raises(ArgumentError, match="arch='m2' does not match structure_type 'edge_sam'"):
        EdgeSAMRepViT(structure_type="edge_sam", arch="m2")
    assert PRETRAINED_URLS["edge_sam_3x"].endswith("/EdgeSAM/resolve/main/weights/edge_sam_3x.pth")
