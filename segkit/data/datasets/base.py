"""``BaseDataset``: images and PNG label maps on disk, read with OpenCV, then a transform pipeline.

A sample is a dict: ``image`` HxWx3 ``uint8`` BGR, ``seg_target`` HxW ``int64`` (void = ``ignore_index``),
``width``/``height`` (original size) and ``id``; the pipeline turns it into tensors. A dataset family is a subclass
of :class:`DatasetFamily` setting the class attributes ``num_classes``, ``classnames``, ``palette`` and optionally
``clsid2label`` (as in SSSegmentation) and describing its files in :meth:`DatasetFamily.layout`; it inherits the
standard SSSegmentation constructor.
"""

from __future__ import annotations

import inspect
import os
import threading
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import DataError
from ...registry import DATASETS, PREPARERS
from ..transforms import build_pipeline
from ..transforms.fused import fits_compact

Palette = list[tuple[int, int, int]]

VOID = -100
"""``clsid2label`` target meaning "void"; replaced by the dataset's ``ignore_index`` when it is built."""
EVAL_ENVS = ("local", "server")


def voc_palette(num_classes: int) -> Palette:
    """The PASCAL VOC bit-interleaved colour map: class ``i`` -> an RGB triple (0 is black)."""
    palette = []
    for label in range(num_classes):
        rgb, value = [0, 0, 0], label
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette.append(tuple(rgb))
    return palette


def read_imageids(path: str, hint: str | None = None) -> list[str]:
    """Read an id list (one id per line, blank lines skipped); a missing file is a ``DataError`` naming it."""
    if not os.path.isfile(path):
        raise DataError(missing_message("split file", path, hint))
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def missing_message(what: str, path: str, hint: str | None = None) -> str:
    """``"image directory not found: PATH"`` plus ``"; run `HINT`"`` when there is a hint."""
    return f"{what} not found: {path}" + (f"; run `{hint}`" if hint else "")


def void_to(clsid2label: dict[int, int], ignore_index: int) -> dict[int, int]:
    """``clsid2label`` with its :data:`VOID` targets replaced by ``ignore_index``."""
    return {raw: ignore_index if label == VOID else label for raw, label in clsid2label.items()}


def preparer_hint(name: str) -> str | None:
    """``segkit prepare-data NAME`` for "not found" errors, when that preparer is registered."""
    return f"segkit prepare-data {name}" if name in PREPARERS else None


@DATASETS.register("BaseDataset")
class BaseDataset(Dataset):
    """Images ``image_dir/<id><image_ext>`` with label maps ``ann_dir/<id><ann_ext>``.

    ``image_dir``/``ann_dir`` default to ``images/{set}`` and ``annotations/{set}``, relative to ``rootdir`` (``{set}``
    is replaced by the split); ``imageids`` default to the lines of ``rootdir/{set}.txt``, or, without that file, to
    the stems of the ``image_ext`` files in ``image_dir``. ``len(dataset) = len(imageids) * repeat_times``.

    Labels: ``clsid2label`` is applied with one lookup table (all pairs at once: ``{1: 2, 2: 3}`` maps 1 to 2, not
    to 3 as SSSegmentation's sequential replacement would). Values outside ``[0, num_classes)`` other than
    ``ignore_index`` are an error naming the file unless ``auto_correct_invalid_seg_target`` (then void).
    In ``'TEST'`` mode the label map skips the pipeline: it stays at the original resolution (an int64 tensor).
    Augmentation randomness comes from ``numpy.random.default_rng([seed, epoch, index])``; see :meth:`set_epoch`.
    With ``record_img2aug_pos_mapper`` each sample also carries ``img2aug_pos_mapper``: before the pipeline an
    HxW map of the flat pixel indices ``y * width + x``, which the transforms move like a label map (-1 where an
    output pixel comes from no original pixel), so a prediction can be traced back to the original image.
    With ``eval_env = "server"`` and mode ``'TEST'`` no label map is read (:meth:`read_unlabelled`): ``seg_target``
    is all ``ignore_index``, for predictions meant for an evaluation server.
    """

    num_classes: int | None = None
    classnames: list[str] | None = None
    palette: Palette | None = None
    clsid2label: dict[int, int] | None = None
    prepare_hint: str | None = None
    """A command that creates the data, named in "not found" errors (e.g. ``segkit prepare-data voc``)."""

    def __init__(
        self,
        rootdir: str,
        set: str = "train",  # noqa: A002  (SSSegmentation's name)
        data_pipelines: Callable[[dict, np.random.Generator], dict] | Sequence[dict] | None = None,
        mode: Literal["TRAIN", "TEST"] = "TRAIN",
        image_dir: str | None = None,
        ann_dir: str | None = None,
        image_ext: str = ".jpg",
        ann_ext: str = ".png",
        imageids: list[str] | None = None,
        repeat_times: int = 1,
        ignore_index: int = -100,
        auto_correct_invalid_seg_target: bool = False,
        num_classes: int | None = None,
        classnames: list[str] | None = None,
        palette: Palette | None = None,
        clsid2label: dict[int, int] | None = None,
        seed: int = 0,
        record_img2aug_pos_mapper: bool = False,
        eval_env: Literal["local", "server"] = "local",
    ) -> None:
        super().__init__()
        self.rootdir = str(rootdir)
        self.set = set
        self.mode = mode.upper()
        if self.mode not in ("TRAIN", "TEST"):
            raise DataError(f"mode must be 'TRAIN' or 'TEST', got {mode!r}")
        if repeat_times < 1:
            raise DataError(f"repeat_times must be >= 1, got {repeat_times}")
        self.repeat_times = repeat_times
        self.ignore_index = ignore_index
        self.auto_correct_invalid_seg_target = auto_correct_invalid_seg_target
        self.seed = seed
        self.record_img2aug_pos_mapper = record_img2aug_pos_mapper
        if eval_env not in EVAL_ENVS:
            raise DataError(f"eval_env must be 'local' or 'server', got {eval_env!r}")
        self.eval_env = eval_env
        self.epoch = 0
        self._set_classes(num_classes, classnames, palette, clsid2label)
        self.pipeline = build_pipeline(data_pipelines, path="data_pipelines")
        self.image_ext, self.ann_ext = image_ext, ann_ext
        self.image_dir = self._resolve(image_dir or "images/{set}")
        self.ann_dir = self._resolve(ann_dir or "annotations/{set}")
        if not os.path.isdir(self.image_dir):
            raise DataError(missing_message("image directory", self.image_dir, self.prepare_hint))
        self.imageids = [str(i) for i in imageids] if imageids is not None else self._find_imageids()
        if not self.imageids:
            raise DataError(f"no images for split '{set}' in {self.image_dir} (looked for '*{image_ext}')")
        self._luts: dict = {}  # raw-value tables, made once (see _lut, _uint8_tables)
        # (thread id, bounds) while __getitem__ reads for a pipeline that compacts labels (other threads unaffected)
        self._compact_bounds: tuple[int, tuple[int, int]] | None = None

    # ----------------------------------------------------------------- setup
    def _set_classes(
        self,
        num_classes: int | None,
        classnames: list[str] | None,
        palette: Palette | None,
        clsid2label: dict[int, int] | None,
    ) -> None:
        """Instance arguments override the class attributes; derive what is missing."""
        classnames = classnames if classnames is not None else type(self).classnames
        num_classes = num_classes if num_classes is not None else type(self).num_classes
        if num_classes is None and classnames is not None:
            num_classes = len(classnames)
        if num_classes is None or num_classes < 1:
            raise DataError(f"{type(self).__name__} needs num_classes (or classnames)")
        self.num_classes = int(num_classes)
        self.classnames = list(classnames) if classnames is not None else [str(i) for i in range(num_classes)]
        palette = palette if palette is not None else type(self).palette
        self.palette = [tuple(int(c) for c in rgb) for rgb in (palette or voc_palette(self.num_classes))]
        self.clsid2label = dict(clsid2label if clsid2label is not None else type(self).clsid2label or {})
        if len(self.classnames) != self.num_classes or len(self.palette) < self.num_classes:
            raise DataError(
                f"{type(self).__name__}: num_classes={self.num_classes} but {len(self.classnames)} classnames "
                f"and {len(self.palette)} palette colours"
            )

    def _resolve(self, directory: str) -> str:
        return os.path.join(self.rootdir, directory.format(set=self.set))

    def _find_imageids(self) -> list[str]:
        split_file = os.path.join(self.rootdir, f"{self.set}.txt")
        if os.path.isfile(split_file):
            return read_imageids(split_file)
        names = sorted(os.listdir(self.image_dir))
        return [n[: -len(self.image_ext)] for n in names if n.endswith(self.image_ext)]

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.imageids) * self.repeat_times

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: augmentations differ between epochs, and are the same for the same epoch."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        index = index % len(self)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        # a pipeline that carries label maps as int16 until ToTensor gets them remapped straight into int16
        bounds = getattr(self.pipeline, "compact_bounds", lambda: None)() if self.mode != "TEST" else None
        self._compact_bounds = (threading.get_ident(), bounds) if bounds is not None else None
        try:
            sample = self.load(self.imageids[index % len(self.imageids)], rng)
        finally:
            self._compact_bounds = None
        if self.record_img2aug_pos_mapper:  # flat index of each original pixel, moved by the transforms
            height, width = sample["image"].shape[:2]
            sample["img2aug_pos_mapper"] = np.arange(height * width, dtype=np.int64).reshape(height, width)
        if self.mode == "TEST":
            seg_target = sample.pop("seg_target")
            sample = self.pipeline(sample, rng)
            sample["seg_target"] = torch.from_numpy(seg_target)
            return sample
        return self.pipeline(sample, rng)

    def load(self, imageid: str, rng: np.random.Generator) -> dict[str, Any]:
        """The untransformed sample of ``imageid``: :meth:`read`, or :meth:`read_unlabelled` for the server.

        ``rng`` is the sample's generator (the one that then drives the augmentations; VSPW draws a frame with it).
        """
        if self.mode == "TEST" and self.eval_env == "server":
            return self.read_unlabelled(imageid)
        return self.read(imageid)

    def image_path(self, imageid: str) -> str:
        """The image file of ``imageid``."""
        return os.path.join(self.image_dir, imageid + self.image_ext)

    def read(self, imageid: str) -> dict[str, Any]:
        """Read one image and its label map, untransformed."""
        image_path = self.image_path(imageid)
        ann_path = os.path.join(self.ann_dir, imageid + self.ann_ext)
        image = read_image(image_path)
        seg_target = self.remap(read_label_map(ann_path), ann_path)
        if seg_target.shape != image.shape[:2]:
            raise DataError(
                f"{ann_path}: label map is {seg_target.shape[1]}x{seg_target.shape[0]} but its image "
                f"{image_path} is {image.shape[1]}x{image.shape[0]}"
            )
        height, width = image.shape[:2]
        return {"image": image, "seg_target": seg_target, "width": width, "height": height, "id": imageid}

    def read_unlabelled(self, imageid: str) -> dict[str, Any]:
        """Read the image alone; ``seg_target`` is all ``ignore_index`` (``eval_env = "server"``)."""
        image = read_image(self.image_path(imageid))
        height, width = image.shape[:2]
        seg_target = np.full((height, width), self.ignore_index, np.int64)
        return {"image": image, "seg_target": seg_target, "width": width, "height": height, "id": imageid}

    # ----------------------------------------------------------------- labels
    def _lut(self, size: int) -> np.ndarray:
        """A raw-value -> label table of ``size`` entries with ``clsid2label`` applied."""
        if size not in self._luts:
            lut = np.arange(size, dtype=np.int64)
            keys = np.array([k for k in self.clsid2label if 0 <= k < size], dtype=np.int64)
            lut[keys] = [self.clsid2label[int(k)] for k in keys]
            self._luts[size] = lut
        return self._luts[size]

    def remap(self, raw: np.ndarray, path: str = "<label map>") -> np.ndarray:
        """Apply ``clsid2label`` and check (or void) values that are not classes; returns ``int64``."""
        if raw.dtype == np.uint8 and raw.ndim == 2:
            return self._remap_uint8(raw, path)
        if raw.dtype == np.uint8:
            seg = self._lut(256)[raw]
        elif raw.size and 0 <= raw.min() and raw.max() < 1 << 16:
            seg = self._lut(1 << 16)[raw.astype(np.intp)]
        else:  # negative or huge raw values: map the distinct values
            values, inverse = np.unique(raw.astype(np.int64), return_inverse=True)
            mapped = np.array([self.clsid2label.get(int(v), int(v)) for v in values], dtype=np.int64)
            seg = mapped[inverse].reshape(raw.shape)
        invalid = ((seg < 0) | (seg >= self.num_classes)) & (seg != self.ignore_index)
        if invalid.any():
            if not self.auto_correct_invalid_seg_target:
                bad = ", ".join(str(v) for v in np.unique(seg[invalid])[:10])
                raise DataError(
                    f"{path}: label values [{bad}] are neither classes of {type(self).__name__} "
                    f"(0..{self.num_classes - 1}) nor ignore_index ({self.ignore_index}); map them with "
                    "clsid2label or set auto_correct_invalid_seg_target = true"
                )
            seg[invalid] = self.ignore_index
        return seg

    def _remap_uint8(self, raw: np.ndarray, path: str) -> np.ndarray:
        """:meth:`remap` of an 8-bit map with ``cv2.LUT`` (several times faster than indexing with the whole map):
        one 8-bit table marks the raw values that map to neither a class nor ``ignore_index``, a second gives the
        labels (int64 bit patterns copied as float64 entries, which ``cv2.LUT`` moves without arithmetic), or ``int16``
        ones while ``__getitem__`` feeds a pipeline that compacts label maps to ``int16`` anyway."""
        raw = np.ascontiguousarray(raw)
        lut, bad, lut16, lut64, first_bad, span = self._uint8_tables()  # raw values below first_bad are all fine
        if (not raw.size or int(raw.max()) >= first_bad) and cv2.countNonZero(cv2.LUT(raw, bad)):
            present = np.zeros(256, bool)
            present[np.unique(raw)] = True
            if not self.auto_correct_invalid_seg_target:
                values = ", ".join(str(v) for v in np.unique(lut[bad.astype(bool) & present])[:10])
                raise DataError(
                    f"{path}: label values [{values}] are neither classes of {type(self).__name__} "
                    f"(0..{self.num_classes - 1}) nor ignore_index ({self.ignore_index}); map them with "
                    "clsid2label or set auto_correct_invalid_seg_target = true"
                )
            lut = np.where(bad.astype(bool), self.ignore_index, lut)
            lut16, lut64 = lut.astype(np.int16), np.ascontiguousarray(lut, np.int64).view(np.float64)
            span = int(lut.min()), int(lut.max())
        owner, bounds = self._compact_bounds or (None, None)
        if owner == threading.get_ident() and fits_compact("seg_target", *span, bounds):
            return cv2.LUT(raw, lut16)  # what Compose's compaction would make of the int64 map
        if not _LUT_COPIES_BITS:
            return lut[raw]
        return cv2.LUT(raw, lut64).view(np.int64)

    def _uint8_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, tuple[int, int]]:
        """For 8-bit maps: the label table, its "not a class nor ignore" marks (``uint8``), the label table as
        ``int16`` and as ``int64`` bit patterns in ``float64`` entries, the first raw value marked, and the table's
        (smallest, largest) label (made once)."""
        if "uint8" not in self._luts:
            lut = self._lut(256)
            bad = ((lut < 0) | (lut >= self.num_classes)) & (lut != self.ignore_index)
            first_bad = int(np.argmax(bad)) if bad.any() else 256
            self._luts["uint8"] = (lut, bad.astype(np.uint8), lut.astype(np.int16),  # one assignment: threads
                                   np.ascontiguousarray(lut, np.int64).view(np.float64), first_bad,
                                   (int(lut.min()), int(lut.max())))
        return self._luts["uint8"]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(rootdir={self.rootdir!r}, set={self.set!r}, mode={self.mode!r}, "
            f"samples={len(self)}, num_classes={self.num_classes}, pipeline={self.pipeline!r})"
        )


class DatasetFamily(BaseDataset):
    """A dataset with a fixed layout: the standard SSSegmentation arguments, the files described by :meth:`layout`.

    A subclass sets the class attributes (``num_classes``, ``classnames``, ``palette``, ``clsid2label`` whose
    :data:`VOID` targets become ``ignore_index``) and implements :meth:`layout`; it inherits this constructor.
    ``sets`` (the valid ``set`` values, checked by the recipe validation as a ``Literal`` and here as a
    ``DataError``), ``default_set`` and ``default_mode`` adjust the constructor's signature for the subclass;
    ``preparer`` names the ``segkit prepare-data`` command given in "not found" errors.
    """

    sets: tuple[str, ...] | None = None
    default_set: str = "train"
    default_mode: Literal["TRAIN", "TEST"] = "TRAIN"
    preparer: str | None = None

    def __init__(
        self,
        rootdir: str,
        set: str = "train",  # noqa: A002  (SSSegmentation's name)
        data_pipelines: Callable[[dict, np.random.Generator], dict] | Sequence[dict] | None = None,
        mode: Literal["TRAIN", "TEST"] = "TRAIN",
        repeat_times: int = 1,
        ignore_index: int = -100,
        auto_correct_invalid_seg_target: bool = False,
        record_img2aug_pos_mapper: bool = False,
        eval_env: Literal["local", "server"] = "local",
        seed: int = 0,
    ) -> None:
        if self.preparer:
            self.prepare_hint = preparer_hint(self.preparer)
        self.rootdir, self.set, self.mode = str(rootdir), set, str(mode).upper()  # what layout() reads
        self.check_set()
        super().__init__(
            rootdir=rootdir,
            set=set,
            data_pipelines=data_pipelines,
            mode=mode,
            repeat_times=repeat_times,
            ignore_index=ignore_index,
            auto_correct_invalid_seg_target=auto_correct_invalid_seg_target,
            clsid2label=void_to(type(self).clsid2label or {}, ignore_index),
            seed=seed,
            record_img2aug_pos_mapper=record_img2aug_pos_mapper,
            eval_env=eval_env,
            **self.layout(),
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__ and {"sets", "default_set", "default_mode"} & cls.__dict__.keys():
            cls.__init__ = _narrowed_init(cls)

    def check_set(self) -> None:
        """A ``set`` outside ``sets`` is a ``DataError``."""
        if self.sets is not None and self.set not in self.sets:
            raise DataError(
                f"{type(self).__name__} has no set {self.set!r}; choose one of {', '.join(self.sets)}"
            )

    def layout(self) -> dict[str, Any]:
        """``image_dir``, ``ann_dir``, ``image_ext``, ``ann_ext`` and ``imageids`` (any subset) for ``BaseDataset``.

        ``self.rootdir``, ``self.set``, ``self.mode`` (upper case) and ``self.prepare_hint`` are set; directories
        are relative to ``rootdir``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not describe its layout")

    def split_ids(self, *parts: str) -> list[str]:
        """The ids listed in ``rootdir/<parts...>``; a missing file is a ``DataError`` naming it."""
        return read_imageids(os.path.join(self.rootdir, *parts), self.prepare_hint)


def _narrowed_init(cls: type[DatasetFamily]) -> Callable[..., None]:
    """The inherited constructor with ``set`` typed ``Literal[*cls.sets]`` and ``cls``'s default set and mode."""
    parent = super(cls, cls).__init__
    hints = typing.get_type_hints(parent)
    hints["set"] = Literal[cls.sets] if cls.sets else str
    defaults = {"set": cls.default_set, "mode": cls.default_mode}
    signature = inspect.signature(parent)
    signature = signature.replace(
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation), default=defaults.get(p.name, p.default))
            for p in signature.parameters.values()
        ]
    )

    def __init__(self: DatasetFamily, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        parent(*bound.args, **bound.kwargs)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__annotations__ = hints
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__doc__ = parent.__doc__
    return __init__


def _lut_copies_bits() -> bool:
    """Whether ``cv2.LUT`` with a float64 table copies int64 bit patterns exactly (negative ints are NaN patterns,
    small ones denormals): checked once on values like those of label tables."""
    table = np.array([-100, -1, 0, 1, 7, 149, 255, 1 << 40, -(1 << 40)] * 28 + [3] * 4, np.int64)
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    try:
        copied = cv2.LUT(levels, table.view(np.float64)).view(np.int64)
    except cv2.error:
        return False
    return bool(np.array_equal(copied.ravel(), table))


_LUT_COPIES_BITS = _lut_copies_bits()


def imread_or_none(path: str, flags: int) -> np.ndarray | None:
    """``cv2.imread``, with OpenCV's assertions (a header claiming 33000x33000 pixels) as a ``DataError``."""
    try:
        return cv2.imread(path, flags)
    except cv2.error as exc:
        limit = "MAX_IMAGE_PIXELS" in str(exc)
        raise DataError(f"cannot read {path}: " + ("its header claims more pixels than OpenCV's limit (2^30)"
                                                   if limit else str(exc).strip().splitlines()[-1])) from None


def read_image(path: str) -> np.ndarray:
    """Read an image as HxWx3 ``uint8`` BGR; a missing or unreadable file is a ``DataError`` naming it."""
    image = imread_or_none(path, cv2.IMREAD_COLOR)
    if image is None:
        if not os.path.isfile(path):
            raise DataError(f"image not found: {path}")
        raise DataError(f"cannot read image (corrupt or unsupported format): {path}")
    return image


def read_label_map(path: str) -> np.ndarray:
    """Read a single-channel label map as stored (class ids); palette PNGs give their palette indices."""
    seg = imread_or_none(path, cv2.IMREAD_UNCHANGED)
    if seg is None:
        if not os.path.isfile(path):
            raise DataError(f"annotation not found: {path}")
        raise DataError(f"cannot read annotation (corrupt or unsupported format): {path}")
    if seg.ndim == 3:  # OpenCV expands palette PNGs to colour; PIL gives the indices
        from PIL import Image

        with Image.open(path) as pil:
            if pil.mode not in ("P", "L", "I", "I;16"):
                raise DataError(
                    f"{path}: annotation is a {pil.mode} colour image; expected a single-channel map of class ids"
                )
            seg = np.array(pil)
    return seg
