"""Evaluation: test-time inference (whole | slide | TTA) and SSSegmentation's metrics from a confusion matrix."""

from .inference import (  # noqa: F401
    MULTISCALE,
    TTA_PRESETS,
    predict_labels,
    predict_logits,
    slide_logits,
    slide_windows,
    swap_channel_pairs,
    tta_preset,
)
from .metrics import (  # noqa: F401
    PER_CLASS_KEYS,
    SSSEG_METRIC_KEYS,
    ConfusionMatrix,
    filter_metrics,
    nan_mean,
    per_class_metrics,
    to_json_safe,
)
