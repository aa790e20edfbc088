"""Write ``data/official_layouts.json``: the state-dict layout (key -> shape) of every official checkpoint.

Run in the parity environment (``nox -s promptable_parity`` installs segment-anything, segment-anything-hq, sam2
and sssegmentation 1.7.0, whose EdgeSAM gives EdgeSAM's layout):

    python tests/promptable/make_official_layouts.py

The models are built on the meta device by the official packages' own builders, so no memory or weights are
needed. The default test suite then loads a state dict of these keys and shapes into segkit's models strictly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

OUT = Path(__file__).with_name("data") / "official_layouts.json"


def layout(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def sam_layouts() -> dict[str, dict]:
    from segment_anything import sam_model_registry

    return {f"sam_{name}": layout(sam_model_registry[name]()) for name in ("vit_b", "vit_l", "vit_h")}


def sam_hq_layouts() -> dict[str, dict]:
    from segment_anything_hq import sam_model_registry

    out = {f"sam_hq_{name}": layout(sam_model_registry[name]()) for name in ("vit_b", "vit_l", "vit_h")}
    with torch.device("cpu"):  # TinyViT calls .item() while building: not on the meta device (it is small)
        out["sam_hq_vit_tiny"] = layout(sam_model_registry["vit_tiny"]())
    out["mobile_sam"] = {k: v for k, v in out["sam_hq_vit_tiny"].items()  # MobileSAM = SAM-HQ tiny minus the HQ parts
                         if not k.startswith(("mask_decoder.hf_", "mask_decoder.compress_vit_feat",
                                              "mask_decoder.embedding_encoder", "mask_decoder.embedding_maskfeature"))}
    return out


def sam2_layouts() -> dict[str, dict]:
    from sam2.build_sam import build_sam2

    out = {}
    for version, folder in (("sam2", "configs/sam2"), ("sam2.1", "configs/sam2.1")):
        for size, short in (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l")):
            with torch.device("cpu"):  # Hiera calls .item() while building: not on the meta device
                model = build_sam2(f"{folder}/{version}_hiera_{short}.yaml", ckpt_path=None, device="cpu")
            out[f"{version}_hiera_{size}"] = layout(model)
    return out


def edgesam_layouts() -> dict[str, dict]:
    """EdgeSAM is not on the package registry; SSSegmentation 1.7.0's EdgeSAM loads the official checkpoints
    strictly, so its module layout is theirs (both checkpoints share one architecture)."""
    from ssseg.modules.models.segmentors.edgesam.edgesam import EdgeSAMPredictor

    with torch.device("cpu"):
        model = EdgeSAMPredictor(device="cpu").model
    return {"edge_sam": layout(model), "edge_sam_3x": layout(model)}


def dumps(layouts: dict[str, dict]) -> str:
    """One line per key (readable diffs, a third of an indented dump)."""
    models = []
    for name in sorted(layouts):
        lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(layouts[name].items()))
        models.append(f"{json.dumps(name)}: {{\n{lines}\n}}")
    return "{\n" + ",\n".join(models) + "\n}\n"


def main() -> None:
    layouts = json.loads(OUT.read_text()) if OUT.exists() else {}
    wanted = sys.argv[1:] or ["sam", "sam_hq", "sam2", "edgesam"]
    with torch.device("meta"):
        for family in wanted:
            layouts.update(globals()[f"{family}_layouts"]())
    OUT.write_text(dumps(layouts))
    print(f"wrote {len(layouts)} layouts to {OUT}")


if __name__ == "__main__":
    main()
