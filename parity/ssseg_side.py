"""SSSegmentation's side of the parity check: find its configs, load them, build its models.

The PyPI sdist of ``sssegmentation==1.7.0`` has no ``ssseg/configs``; they are read from a checkout
(``--ssseg-src`` or ``$SSSEG_SRC``), whose ``ssseg`` directory is appended to the installed package's ``__path__`` so
that ``ssseg.configs.<dir>.<name>`` imports with its relative imports. Each config is loaded afresh (its
``ssseg.configs`` modules are dropped from ``sys.modules`` first): the configs ``.copy()`` their base dicts shallowly
and modify nested tables in place, so a base mutated by one config must not leak into the next.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

CLONE_HINT = ("git clone https://github.com/SegmentationBLWX/sssegmentation && cd sssegmentation && "
              "git checkout 6d0238f5")

NEEDS_MMCV: set[str] = set()
"""Segmentors SSSeg cannot run without mmcv even with :func:`install_op_shims` (none since the shims)."""

OP_SHIMS = {
    "CCNet": ("ssseg.modules.models.segmentors.ccnet.ccnet", "CrissCrossAttention",
              "segkit.models.layers.criss_cross", "CrissCrossAttention"),
    "PSANet": ("ssseg.modules.models.segmentors.psanet.psanet", "PSAMask",
               "segkit.models.layers.psa_mask", "PSAMask"),
    "PointRend": ("ssseg.modules.models.segmentors.pointrend.pointrend", "PointSample",
                  "segkit.models.layers.point_sample", "point_sample"),
    "Mask2Former": ("ssseg.modules.models.segmentors.mask2former.transformers.pixeldecoder",
                    "ms_deform_attn_core_pytorch", "segkit.models.layers.ms_deform_attn", "ms_deform_attn_core"),
}
"""SSSeg 1.7.0 imports these four mmcv ops (``try: from mmcv.ops import ... except: X = None``) and nothing else
from mmcv for inference (focal loss, the fifth import, is training only): segmentor -> (SSSeg module, the name it
bound, segkit module, segkit's pure-PyTorch replacement). Without mmcv, :func:`install_op_shims` binds segkit's
implementation to that name, so SSSeg's model builds and runs. Each replacement has mmcv's call signature and
semantics: ``CrissCrossAttention(in_channels)`` is a module with mmcv's parameters (``query_conv``, ``key_conv``,
``value_conv``, ``gamma.scale``), ``PSAMask(psa_type, mask_size)`` and ``point_sample(input, points,
align_corners=False, **grid_sample_kwargs)`` have none (segkit's ``point_sample`` casts the points to the input's
dtype, which mmcv's does not: SSSeg's PointRend makes its test points in float32, so with mmcv it cannot run in
float64 at all), and ``ms_deform_attn_core(value, spatial_shapes,
sampling_locations, attention_weights)`` is what SSSeg's ``MSDeformAttn`` falls back to when
``MultiScaleDeformableAttnFunction`` (compiled) is missing. Every other parameter of those rows is SSSeg's own, so
such a row proves the wiring and the weights; the ops themselves are proven by segkit's loop-reference tests."""

SHIMMED: dict[str, str] = {}
"""Segmentor -> note, for the shims :func:`import_ssseg` installed."""

SHIM_NOTE = ("SSSeg 1.7.0 imports {op} from mmcv.ops; without mmcv, parity binds segkit's pure-PyTorch {segkit} "
             "in SSSeg's module (same signature and parameters as mmcv's), so SSSeg's side runs segkit's op too: this "
             "row proves the wiring and the weights, and the op itself is proven by segkit's loop-reference tests")

EVAL_IRRELEVANT = ("pretrained", "pretrained_model_path", "selected_indices")
"""Backbone-table keys that do not change the module (dropped before tables are compared)."""


class SSSegUnavailable(RuntimeError):
    """SSSegmentation (the package or its configs) cannot be found."""


def find_src(path: str | None) -> Path:
    """The SSSegmentation checkout holding ``ssseg/configs``."""
    path = path or os.environ.get("SSSEG_SRC")
    if not path:
        raise SSSegUnavailable("SSSegmentation's configs are not in the sssegmentation package; give a checkout "
                               f"with --ssseg-src PATH (or $SSSEG_SRC):\n  {CLONE_HINT}")
    root = Path(path).expanduser().resolve()
    if not (root / "ssseg" / "configs").is_dir():
        raise SSSegUnavailable(f"{root} has no ssseg/configs; check out SSSegmentation 1.7.0 there:\n  {CLONE_HINT}")
    return root


def import_ssseg(src: Path) -> Any:
    """Import the installed ``ssseg`` (1.7.0) and let it find ``ssseg.configs`` in ``src``."""
    try:
        import ssseg
    except ImportError as exc:
        raise SSSegUnavailable(f"cannot import ssseg ({exc}); run `nox -s parity`, which installs "
                               "sssegmentation==1.7.0") from None
    if getattr(ssseg, "__version__", None) != "1.7.0":
        raise SSSegUnavailable(f"ssseg {getattr(ssseg, '__version__', '?')} is installed; parity needs 1.7.0")
    extra = str(src / "ssseg")
    if extra not in ssseg.__path__:
        ssseg.__path__.append(extra)
    patch_build_bugs()
    patch_float64()
    SHIMMED.update(install_op_shims())
    return ssseg


def install_op_shims() -> dict[str, str]:
    """Bind segkit's op for each of :data:`OP_SHIMS` whose SSSeg module found no mmcv (its name is ``None``);
    returns segmentor -> note for the shims in place (an installed mmcv is left alone)."""
    installed = {}
    for segmentor, (module_name, name, segkit_module, segkit_name) in OP_SHIMS.items():
        module = importlib.import_module(module_name)
        replacement = getattr(importlib.import_module(segkit_module), segkit_name)
        if getattr(module, name, None) is None:
            setattr(module, name, replacement)
        if getattr(module, name) is replacement:
            installed[segmentor] = SHIM_NOTE.format(op=f"`{name}`", segkit=f"`{segkit_module}.{segkit_name}`")
    return installed


BUILD_PATCHES = {
    "HRNet": "SSSeg 1.7.0 cannot build HRNet: HRModule.makebranches reads self.use_checkpoint before __init__ sets "
             "it (AttributeError); parity sets the class default use_checkpoint = False (what every config means) "
             "so that SSSeg builds",
    "UNet": "SSSeg 1.7.0 cannot build UNet: each UpConvBlock pops 'type' from the upsample_cfg dict that UNet shares "
            "with all of them (its mutable default), so the second one fails (KeyError: 'type'); parity gives each "
            "block its own copy so that SSSeg builds",
}
"""Backbone types SSSeg 1.7.0 cannot build as shipped, and what :func:`patch_build_bugs` does about it (nothing
that changes what a model computes)."""


FLOAT64_PATCHES = {
    "Mask2Former": "SSSeg 1.7.0's Mask2Former pixel decoder casts its inputs with `.float()` (against half precision: "
                   "'deformable detr does not support half precision'), so the model cannot run in float64 (a float32 "
                   "input meets float64 weights); parity makes that cast 'at least float32' "
                   "(`x.to(torch.promote_types(x.dtype, torch.float32))`), the same in float32 and half precision, "
                   "as segkit does",
}
"""Segmentor types whose SSSeg 1.7.0 code cannot run in float64 as shipped, and what :func:`patch_float64` does about
it (nothing that changes what the model computes in float32 or half precision)."""


def patch_float64() -> None:
    """Rewrite ``.float()`` in SSSeg's ``MSDeformAttnPixelDecoder.forwardfeatures`` (see :data:`FLOAT64_PATCHES`)."""
    import inspect
    import textwrap

    from ssseg.modules.models.segmentors.mask2former.transformers import pixeldecoder

    decoder = pixeldecoder.MSDeformAttnPixelDecoder
    if getattr(decoder.forwardfeatures, "parity_patched", False):
        return
    source = textwrap.dedent(inspect.getsource(decoder.forwardfeatures))
    if source.count("features[f].float()") != 2:
        raise SSSegUnavailable("SSSeg's MSDeformAttnPixelDecoder.forwardfeatures is not 1.7.0's (two "
                               "`features[f].float()` expected)")
    source = source.replace("features[f].float()",
                            "features[f].to(torch.promote_types(features[f].dtype, torch.float32))")
    namespace: dict[str, Any] = {}
    exec(compile(source, inspect.getsourcefile(decoder) or "<pixeldecoder>", "exec"), vars(pixeldecoder), namespace)
    namespace["forwardfeatures"].parity_patched = True
    decoder.forwardfeatures = namespace["forwardfeatures"]


def patch_build_bugs() -> None:
    from ssseg.modules.models.backbones import hrnet, unet

    if not hasattr(hrnet.HRModule, "use_checkpoint"):
        hrnet.HRModule.use_checkpoint = False
    original = unet.UpConvBlock.__init__
    if not getattr(original, "parity_patched", False):
        @functools.wraps(original)
        def init(self, *args, **kwargs):
            if isinstance(kwargs.get("upsample_cfg"), dict):
                kwargs["upsample_cfg"] = copy.deepcopy(kwargs["upsample_cfg"])
            original(self, *args, **kwargs)

        init.parity_patched = True
        unet.UpConvBlock.__init__ = init


def config_names(src: Path) -> list[str]:
    """Every config as ``<dir>/<name>`` (``fcn/fcn_resnet50os8_voc``)."""
    configs = src / "ssseg" / "configs"
    return sorted(f"{p.parent.name}/{p.stem}" for p in configs.glob("*/*.py")
                  if p.parent.name != "_base_" and not p.name.startswith("_"))


def load_config(name: str) -> dict:
    """``SEGMENTOR_CFG`` of ``<dir>/<name>``, loaded afresh and deep-copied."""
    for key in [k for k in sys.modules if k == "ssseg.configs" or k.startswith("ssseg.configs.")]:
        del sys.modules[key]
    module = importlib.import_module("ssseg.configs." + name.replace("/", "."))
    return copy.deepcopy(module.SEGMENTOR_CFG)


def no_pretrained(table: dict) -> dict:
    """``table`` with ``pretrained=False`` (and no ``pretrained_model_path``) at every level (BiSeNetV1 nests one)."""
    table = copy.deepcopy(table)
    if "pretrained" in table:
        table["pretrained"] = False
    table.pop("pretrained_model_path", None)
    for key, value in table.items():
        if isinstance(value, dict) and "type" in value:
            table[key] = no_pretrained(value)
    return table


def backbone_table(cfg: dict) -> dict:
    """The backbone table as SSSegmentation builds it (the segmentor's ``norm_cfg`` injected when absent)."""
    table = copy.deepcopy(cfg["backbone"])
    if "norm_cfg" not in table and "norm_cfg" in cfg:
        table["norm_cfg"] = copy.deepcopy(cfg["norm_cfg"])
    return table


def backbone_key(table: dict) -> str:
    """A canonical string of a backbone table without the keys that do not change the module."""
    return json.dumps({k: v for k, v in table.items() if k not in EVAL_IRRELEVANT}, sort_keys=True, default=str)


def build_segmentor(cfg: dict):
    """SSSegmentation's segmentor for ``cfg`` in TEST mode, without pretrained weights."""
    from ssseg.modules import BuildSegmentor

    cfg = copy.deepcopy(cfg)
    cfg["backbone"] = no_pretrained(cfg["backbone"])
    return BuildSegmentor(segmentor_cfg=cfg, mode="TEST")


def build_backbone(table: dict):
    """SSSegmentation's backbone for ``table`` (``selected_indices`` dropped, as its builder does)."""
    from ssseg.modules import BuildBackbone

    return BuildBackbone(no_pretrained(table))


def segmentor_logits(model, images):
    """SSSegmentation's TEST-mode ``seg_logits`` (at head resolution)."""
    from ssseg.modules.utils import SSSegInputStructure

    return model(SSSegInputStructure(images=images, mode="TEST")).seg_logits
