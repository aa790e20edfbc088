"""``IDRNet``: "IDRNet: Intervention-Driven Relation Network for Semantic Segmentation" (Jin et al., NeurIPS 2023).

Backbone -> :class:`~segkit.models.heads.idrnet.IDRNetHead` (+ auxiliary heads while training). In training the
segmentor needs the ground truth and, after the ordinary pass, runs SSSegmentation's statistical intervention under
``no_grad``:

1. per image, an intervention class is drawn among the predicted ones with weights ``1 / selected_classes_counter``
   (which it then increments);
2. the context is recomputed without that class and ``decoder_stage2`` is run again with the *same dropout masks* as
   the ordinary pass (SSSeg reseeds the global CUDA RNG with a seed from Python's ``random`` before both passes; here
   both passes run under ``torch.random.fork_rng`` seeded with one draw from the global torch generator, so the masks
   match and the global generators are not reseeded);
3. for each class in the image's ground truth, the row of the intervention class in ``class_relations_mean`` (resp.
   ``_var``) moves (momentum ``clsrelation_momentum``) towards the increase of the mean (resp. variance) of that
   class's per-pixel cross-entropy;
4. the relations and the counter are averaged across ranks (``reduce_mean``), then the dataset-level class
   representations move towards the batch's class means (``dlclsreps_momentum``) and are averaged too.

The state is updated in place and never replaced (SSSeg quirk 11 replaces the parameters after its all-reduce).
Outputs: ``out`` (stage 2, ``loss_cls_stage2``), ``stage1`` (``loss_cls_stage1``) and the auxiliary outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...registry import SEGMENTORS
from ..heads.idrnet_ops import class_feature_means, class_loss_statistics
from .base import EncoderDecoder, Route

if TYPE_CHECKING:
    from ..features import FeatureInfo


def replay_rng(seed: int, device: torch.device, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``fn()`` with the random generator of ``device`` seeded with ``seed``; the generators are restored after, so
    two calls with one seed draw the same dropout masks and leave no trace on the global random state."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)
        return fn()


@SEGMENTORS.register("IDRNet")
class IDRNet(EncoderDecoder):
    """See the module docstring."""

    head_type = "IDRNetHead"
    uses_targets = True
    loss_routes = {"loss_cls_stage1": Route("stage1"), "loss_cls_stage2": Route("out")}
    ssseg_prefixes = {
        "backbone_net": "backbone", "bottleneck": "head.bottleneck",
        "coarse_context_module": "head.coarse_context_module",
        "coarsecontext_refiner_before": "head.coarsecontext_refiner_before",
        "coarsecontext_refiner_after": "head.coarsecontext_refiner_after",
        "lateral_convs": "head.fpn.lateral_convs", "fpn_convs": "head.fpn.fpn_convs",
        "class_relations_mean": "head.class_relations_mean", "class_relations_var": "head.class_relations_var",
        "selected_classes_counter": "head.selected_classes_counter", "idcontext_refiner": "head.idcontext_refiner",
        "dl_cls_representations": "head.dl_cls_representations", "decoder_stage1": "head.decoder_stage1",
        "decoder_stage2": "head.decoder_stage2", "auxiliary_decoder": "aux_heads",
    }

    @classmethod
    def head_arguments(cls, features: FeatureInfo) -> dict[str, Any]:
        return {"feature_channels": features.channels}  # the head's FPN reads every selected level

    def forward(self, images: torch.Tensor, targets: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        features = self.extract_features(images)
        parts = self.head.decode(features)
        if not self.training:
            return {"out": self.head.stage2(parts, parts["id_context"])}
        if targets is None or "seg_target" not in targets:
            raise ValueError("IDRNet updates its class relations from the ground truth: call it with targets in "
                             "training")
        seed = int(torch.randint(1, 2**62, (1,)).item())  # one draw from the global CPU generator, no reseeding
        stage2 = replay_rng(seed, images.device, lambda: self.head.stage2(parts, parts["id_context"]))
        seg = targets["seg_target"]
        with torch.no_grad():
            self._intervene(parts, stage2.detach(), seg, seed)
            self._update_representations(parts["feats"].detach(), seg)
        outputs = {"out": stage2, "stage1": parts["stage1"]}
        if self.aux_heads is not None:
            for name, aux_head in zip(self.aux_names, self.aux_heads, strict=True):
                outputs[name] = aux_head(features)
        return outputs

    # ----------------------------------------------------------------------------------------------- state
    def _choose_interventions(self, present: torch.Tensor) -> torch.Tensor:
        """One class per image among those present, drawn with weights ``1 / counter``; the counter is incremented
        image after image (as SSSeg's loop)."""
        counter = self.head.selected_classes_counter.data
        chosen = []
        for image_present in present:
            weights = image_present.to(counter.dtype) / counter
            choice = torch.multinomial(weights, 1)
            counter[choice] = counter[choice] + 1.0
            chosen.append(choice)
        return torch.cat(chosen)

    def _intervene(self, parts: dict[str, torch.Tensor], stage2: torch.Tensor, seg: torch.Tensor, seed: int) -> None:
        head = self.head
        intervention = self._choose_interventions(parts["present"])
        id_context, _ = head.id_context(parts["feats_withdl"], parts["stage1"], intervention)
        intervened = replay_rng(seed, stage2.device, lambda: head.stage2(parts, id_context))
        size = seg.shape[-2:]
        intervened = F.interpolate(intervened, size=size, mode="bilinear", align_corners=self.align_corners)
        anchor = F.interpolate(stage2, size=size, mode="bilinear", align_corners=self.align_corners)
        relations_mean, relations_var = head.class_relations_mean.data, head.class_relations_var.data
        momentum = head.clsrelation_momentum
        for index in range(intervention.shape[0]):
            row = intervention[index:index + 1]  # a 1-element index: no host synchronisation
            counts, mean_i, var_i = class_loss_statistics(intervened[index], seg[index], head.num_classes,
                                                          head.ignore_index)
            _, mean_a, var_a = class_loss_statistics(anchor[index], seg[index], head.num_classes, head.ignore_index)
            for relations, change, needed in ((relations_mean, mean_i - mean_a, counts > 0),
                                              (relations_var, var_i - var_a, counts > 1)):
                old = relations.index_select(0, row)
                moved = change.to(relations.dtype) * momentum + old * (1 - momentum)
                relations.index_copy_(0, row, torch.where(needed, moved, old))
        for state in (relations_mean, relations_var, head.selected_classes_counter.data):
            state.copy_(self.reduce_mean(state))

    def _update_representations(self, feats: torch.Tensor, seg: torch.Tensor) -> None:
        head = self.head
        representations = head.dl_cls_representations.data
        with torch.autocast(device_type=feats.device.type, enabled=False):
            counts, means = class_feature_means(feats, seg, head.num_classes, head.ignore_index, self.align_corners)
        momentum = head.dlclsreps_momentum
        moved = means.to(representations.dtype) * momentum + representations * (1 - momentum)
        representations.copy_(torch.where((counts > 0).unsqueeze(1), moved, representations))
        representations.copy_(self.reduce_mean(representations))
