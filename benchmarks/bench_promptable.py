"""Promptable models on the CPU: time to encode one 1024x1024 image and to decode one point prompt, for segkit and,
where installed (``nox -s promptable_parity``'s environment), the official code of the same model with the same
random weights: segment-anything (SAM ViT-B), segment-anything-hq's TinyViT + segment-anything's decoder
(MobileSAM's code), SSSegmentation 1.7.0's EdgeSAM (EdgeSAM is not on the package registry).

Runs alternate between the two implementations; figures are medians, and ``ratio`` is segkit / reference from
the same run. Threads: ``torch.get_num_threads()`` (set OMP_NUM_THREADS).

    python benchmarks/bench_promptable.py [--repeats 5] [--models sam_vit_b,mobile_sam,edge_sam]
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
        else:
            return None
    except ImportError:
        return None
    return randomize(model).eval()


def time_pair(ours, reference, repeats: int) -> dict:
    """Median seconds of encode (1024x1024) and decode (one point, multimask) for segkit and the reference."""
    image = torch.rand(1, 3, 1024, 1024) * 255
    point, label = torch.tensor([[[400.0, 300.0]]]), torch.ones(1, 1, dtype=torch.int32)
    timings: dict[str, list[float]] = {}

    def record(key, fn):
        start = time.perf_counter()
        result = fn()
        timings.setdefault(key, []).append(time.perf_counter() - start)
        return result

    with torch.no_grad():
        for _ in range(repeats + 1):  # the first round warms up and is dropped
            embedding = record("encode", lambda: ours.encode_image(image))
            for _ in range(5):
                record("decode", lambda embedding=embedding: ours.decode(embedding, point, label))
            if reference is not None:
                features = record("reference_encode", lambda: reference_encode(reference, image))
                for _ in range(5):
                    record("reference_decode", lambda features=features: reference_decode(reference, features,
                                                                                          point, label))
    out = {key: statistics.median(values[1 if key.endswith("encode") else 5:]) for key, values in timings.items()}
    for step in ("encode", "decode"):
        if f"reference_{step}" in out:
            out[f"{step}_ratio"] = out[step] / out[f"reference_{step}"]
    return {key: round(value, 4) for key, value in out.items()}


def reference_encode(model, image: torch.Tensor):
    features = model.image_encoder(model.preprocess(image))
    return features[0] if isinstance(features, tuple) else features


def reference_decode(model, features, point, label):
    prompt_encoder = model.prompt_encoder
    sparse, dense = prompt_encoder(points=(point, label), boxes=None, masks=None)
    pe = prompt_encoder.get_dense_pe() if hasattr(prompt_encoder, "get_dense_pe") else prompt_encoder.getdensepe()
    kwargs = {"num_multimask_outputs": 3} if type(model).__name__ == "EdgeSAM" else {"multimask_output": True}
    return model.mask_decoder(image_embeddings=features, image_pe=pe, sparse_prompt_embeddings=sparse,
                              dense_prompt_embeddings=dense, **kwargs)


def run(repeats: int = 3, models: tuple[str, ...] = ("sam_vit_b", "mobile_sam", "edge_sam")) -> dict:
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
    parser.add_argument("--models", default="sam_vit_b,mobile_sam,edge_sam")
    args = parser.parse_args()
    result = run(args.repeats, tuple(args.models.split(",")))
    out = ROOT / "benchmarks" / "results" / "promptable.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
