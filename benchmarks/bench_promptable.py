"""Promptable models on the CPU: time to encode one 1024x1024 image and to decode one point prompt, for segkit and,
where installed (``nox -s promptable_parity``'s environment), the official code of the same model with the same
random weights: segment-anything (SAM ViT-B), segment-anything-hq's TinyViT + segment-anything's decoder
(MobileSAM's code), SSSegmentation 1.7.0's EdgeSAM (EdgeSAM is not on the package registry) and sam2's own
``build_sam2`` (SAM 2.1 tiny; encode as ``SAM2ImagePredictor.set_image`` after its resize, decode as its
``_predict``: prompt encoder and mask decoder with the high-resolution features).

Calls alternate between the two implementations (one encode or decode each in turn); figures are medians, and
``ratio`` is the median of segkit / reference over those back-to-back pairs. Threads: ``torch.get_num_threads()``
(set OMP_NUM_THREADS).

    python benchmarks/bench_promptable.py [--repeats 5] [--models sam_vit_b,mobile_sam,edge_sam,sam2.1_hiera_tiny]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def reference_model(name: str):
    """The official (or reference) implementation of ``name`` with random weights, or None when not installed."""
    from tests.promptable.official import build_official_sam, build_official_tiny, randomize

    try:
        if name == "sam_vit_b":
            model = build_official_sam(1024)
        elif name == "mobile_sam":
            model = build_official_tiny(hq=False)
        elif name == "edge_sam":
            from ssseg.modules.models.segmentors.edgesam.edgesam import EdgeSAMPredictor

            model = EdgeSAMPredictor(device="cpu").model
        elif name == "sam2.1_hiera_tiny":
            from sam2.build_sam import build_sam2

            model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
        else:
            return None
    except ImportError:
        return None
    return randomize(model).eval()


def time_pair(ours, reference, repeats: int) -> dict:
    """Median seconds of encode (1024x1024) and decode (one point, multimask) for segkit and the reference.

    The two run back to back, one call each in turn (which goes first alternates between rounds), and each
    ``*_ratio`` is the median of the per-pair ratios, so load from other processes that comes and goes on a
    shared machine touches both sides of a pair alike."""
    image = torch.rand(1, 3, 1024, 1024) * 255
    point, label = torch.tensor([[[400.0, 300.0]]]), torch.ones(1, 1, dtype=torch.int32)
    timings: dict[str, list[float]] = {}

    def record(key, fn):
        start = time.perf_counter()
        result = fn()
        timings.setdefault(key, []).append(time.perf_counter() - start)
        return result

    with torch.no_grad():
        for round_index in range(repeats + 1):  # the first round warms up and is dropped
            sides = [("", lambda: ours.encode_image(image),
                      lambda embedding: ours.decode(embedding, point, label))]
            if reference is not None:
                sides.append(("reference_", lambda: reference_encode(reference, image),
                              lambda features: reference_decode(reference, features, point, label)))
            if round_index % 2:
                sides.reverse()
            embeddings = [record(f"{prefix}encode", encode) for prefix, encode, _ in sides]
            for _ in range(5):
                for (prefix, _, decode), embedding in zip(sides, embeddings, strict=True):
                    record(f"{prefix}decode", lambda decode=decode, embedding=embedding: decode(embedding))
    kept = {key: values[1 if key.endswith("encode") else 5:] for key, values in timings.items()}
    out = {key: statistics.median(values) for key, values in kept.items()}
    for step in ("encode", "decode"):
        if f"reference_{step}" in kept:
            out[f"{step}_ratio"] = statistics.median(
                a / b for a, b in zip(kept[step], kept[f"reference_{step}"], strict=True))
    return {key: round(value, 4) for key, value in out.items()}


def reference_encode(model, image: torch.Tensor):
    if type(model).__module__.startswith("sam2."):
        return sam2_reference_encode(model, image)
    features = model.image_encoder(model.preprocess(image))
    return features[0] if isinstance(features, tuple) else features


def sam2_reference_encode(model, image: torch.Tensor) -> dict:
    """``SAM2ImagePredictor.set_image`` from its resized tensor on: normalise, ``forward_image`` (trunk, FPN and
    the decoder's high-resolution projections), flatten, add ``no_mem_embed``, back to maps."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    backbone_out = model.forward_image((image / 255.0 - mean) / std)
    _, vision_feats, _, sizes = model._prepare_backbone_features(backbone_out)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    feats = [feat.permute(1, 2, 0).view(1, -1, *size) for feat, size in zip(vision_feats, sizes, strict=True)]
    return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}


def reference_decode(model, features, point, label):
    if isinstance(features, dict):  # SAM 2: SAM2ImagePredictor._predict's prompt encoder and decoder calls
        sparse, dense = model.sam_prompt_encoder(points=(point, label), boxes=None, masks=None)
        return model.sam_mask_decoder(image_embeddings=features["image_embed"],
                                      image_pe=model.sam_prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=True, repeat_image=False,
                                      high_res_features=features["high_res_feats"])
    prompt_encoder = model.prompt_encoder
    sparse, dense = prompt_encoder(points=(point, label), boxes=None, masks=None)
    pe = prompt_encoder.get_dense_pe() if hasattr(prompt_encoder, "get_dense_pe") else prompt_encoder.getdensepe()
    kwargs = {"num_multimask_outputs": 3} if type(model).__name__ == "EdgeSAM" else {"multimask_output": True}
    return model.mask_decoder(image_embeddings=features, image_pe=pe, sparse_prompt_embeddings=sparse,
                              dense_prompt_embeddings=dense, **kwargs)


MODELS = ("sam_vit_b", "mobile_sam", "edge_sam", "sam2.1_hiera_tiny")


def run(repeats: int = 3, models: tuple[str, ...] = MODELS) -> dict:
    from segkit.promptable import build_promptable

    results = {}
    for name in models:
        reference = reference_model(name)
        ours = build_promptable(name)
        if reference is not None:
            ours.load_state_dict(ours.convert_checkpoint(
                {k: v for k, v in reference.state_dict().items() if not k.startswith("image_encoder.head")
                 and not k.startswith("image_encoder.norm_head")}))
        results[name] = {**time_pair(ours, reference, repeats),
                         "reference": None if reference is None else type(reference).__module__.split(".")[0]}
    summary = {name: {k: r[k] for k in ("encode", "decode", "encode_ratio", "decode_ratio") if k in r}
               for name, r in results.items()}
    return {"threads": torch.get_num_threads(), "repeats": repeats, "models": results, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    result = run(args.repeats, tuple(args.models.split(",")))
    out = ROOT / "benchmarks" / "results" / "promptable.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
