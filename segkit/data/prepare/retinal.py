"""Retinal vessel datasets (2 classes): DRIVE, STARE, CHASE_DB1, HRF.

Final layout (the mmsegmentation converters' layout, which SSSegmentation's archives and datasets use, §9.1)::

    images/{training,validation}/<name>.png
    annotations/{training,validation}/<name><mask suffix>.png    0 = background, 1 = vessel
    {train,val}.txt                                              ids = image file names (with extension)

From the official files the conversion follows mmsegmentation's tools/dataset_converters (same splits, masks
thresholded at 128); SSSegmentation's archives are already in this layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import register_preparer
from .convert import as_is, binary_mask, convert_pairs, ensure_id_lists, locate
from .preparer import ArchivePreparer, Bundle, SplitSpec, ssseg_bundle, ssseg_sources

SPLIT_DIRS = {"train": "training", "val": "validation"}
FINAL = ("images/training", "annotations/training")


@dataclass(frozen=True)
class Sample:
    """One official image, the split it goes to, and its masks as ``(source, final mask name)``."""

    image: Path
    name: str
    split: str
    masks: tuple[tuple[Path, str], ...]


class RetinalPreparer(ArchivePreparer):
    """Shared steps: find the final layout, or convert the official files, then write the id lists."""

    markers = FINAL
    mask_name = "{stem}.png"
    """The mask of image id ``{id}`` (``{stem}``: the id up to its first dot), in the same split folder."""
    counts = (0, 0)

    @property
    def splits(self) -> tuple[SplitSpec, ...]:  # type: ignore[override]
        return tuple(
            SplitSpec(split, f"{split}.txt", f"images/{folder}/{{id}}", f"annotations/{folder}/{self.mask_name}",
                      expected=count)
            for (split, folder), count in zip(SPLIT_DIRS.items(), self.counts, strict=True)
        )

    def convert(self, tree: Path) -> Path:
        folder = locate(tree, FINAL)
        if folder is None:
            samples = self.official_samples(tree)
            if not samples:
                self.find(tree)  # raises, naming what was expected
            folder = tree.parent / "converted"
            write_samples(folder, samples)
        ensure_id_lists(folder, {f"{s}.txt": (f"images/{d}", "", True) for s, d in SPLIT_DIRS.items()})
        return folder

    def official_samples(self, tree: Path) -> list[Sample]:
        """The official files found in ``tree`` (empty when there are none)."""
        return []


def write_samples(out: Path, samples: list[Sample]) -> None:
    for sample in samples:
        folder = SPLIT_DIRS[sample.split]
        convert_pairs([(sample.image, out / "images" / folder / f"{sample.name}.png")], as_is)
        convert_pairs([(src, out / "annotations" / folder / name) for src, name in sample.masks], binary_mask)


def files(tree: Path, pattern: str) -> list[Path]:
    """Files anywhere under ``tree`` whose name matches the regular expression, sorted by name."""
    regex = re.compile(pattern, re.IGNORECASE)
    return sorted((p for p in tree.rglob("*") if p.is_file() and regex.fullmatch(p.name)), key=lambda p: p.name)


@register_preparer
class DRIVEPreparer(RetinalPreparer):
    """DRIVE: 20 training + 20 test images of 565x584; the test images are the validation split."""

    name = "drive"
    dirname = "DRIVE"
    description = "DRIVE retinal vessels: 20 train / 20 val images (no published checksum: not verified)"
    size = "30 MB"
    license = "research use, registration required (https://drive.grand-challenge.org/)"
    bundles = (ssseg_bundle("DRIVE.tar.gz"),
               Bundle("the official release (registration)", ("training.zip", "test.zip"),
                      "https://drive.grand-challenge.org/"))
    sources = ssseg_sources(bundles[0])
    mask_name = "{stem}_manual1.png"
    counts = (20, 20)  # Staal et al., IEEE TMI 2004

    def official_samples(self, tree: Path) -> list[Sample]:
        samples = []
        for split, part in (("train", "training"), ("val", "test")):
            for image in files(tree, rf"\d+_{part}\.tif"):
                number = image.name.split("_")[0]
                manual = files(image.parent.parent / "1st_manual", rf"{number}_manual1\.gif")
                samples.append(Sample(image, number, split, tuple((m, f"{number}_manual1.png") for m in manual)))
        return samples


@register_preparer
class STAREPreparer(RetinalPreparer):
    """STARE: 20 images of 700x605, the first 10 (by name) for training; Hoover's ('ah') masks are used."""

    name = "stare"
    dirname = "STARE"
    description = "STARE retinal vessels: 10 train / 10 val images (checksums: sha256 published by torch-em)"
    size = "10 MB"
    license = "free for research (https://cecas.clemson.edu/~ahoover/stare/)"
    official = Bundle("the official release", ("stare-images.tar", "labels-ah.tar", "labels-vk.tar"),
                      "https://cecas.clemson.edu/~ahoover/stare/probing/")
    bundles = (official, ssseg_bundle("STARE.tar.gz"))
    # sha256 from constantinpape/torch-em torch_em/data/datasets/medical/stare.py
    sources = [
        {"url": f"http://cecas.clemson.edu/~ahoover/stare/probing/{name}", "filename": name, "sha256": digest,
         "checksum_from": "torch-em (torch_em/data/datasets/medical/stare.py)"}
        for name, digest in (
            ("stare-images.tar", "5f7b509b6067cad4f1be84933145d783de9ec087b3eaaf4db0103dd0144dd433"),
            ("labels-ah.tar", "ebf2f1e17ca955f24579d9edd990e2dae79a5c82def69f0985d8e24f826ddd2f"),
            ("labels-vk.tar", "47474a701536b0cfdb369fdce012be36141e9f44d80387f0179446b5cb0f5576"),
        )
    ]
    mask_name = "{stem}.ah.png"
    counts = (10, 10)  # mmsegmentation's stare.py: TRAINING_LEN = 10 of STARE_LEN = 20

    def official_samples(self, tree: Path) -> list[Sample]:
        samples = []
        for index, image in enumerate(files(tree, r"im\d{4}\.ppm(\.gz)?")):
            stem = image.name.split(".")[0]
            masks = tuple((m, f"{stem}.{who}.png") for who in ("ah", "vk")
                          for m in files(tree, rf"{stem}\.{who}\.ppm(\.gz)?"))
            samples.append(Sample(image, stem, "train" if index < 10 else "val", masks))
        return samples


@register_preparer
class ChaseDB1Preparer(RetinalPreparer):
    """CHASE_DB1: 28 images of 999x960, the first 20 (by name) for training; first observer's masks are used."""

    name = "chase_db1"
    dirname = "CHASE_DB1"
    description = "CHASE_DB1 retinal vessels: 20 train / 8 val images (no published checksum: not verified)"
    size = "3 MB"
    license = "CC BY 4.0 (https://researchdata.kingston.ac.uk/96/)"
    bundles = (Bundle("the official release", ("CHASEDB1.zip",), "https://researchdata.kingston.ac.uk/96/"),
               ssseg_bundle("CHASE_DB1.tar.gz"))
    sources = [{"url": "https://researchdata.kingston.ac.uk/96/1/CHASEDB1.zip", "filename": "CHASEDB1.zip",
                "sha256": None}]
    mask_name = "{stem}_1stHO.png"
    counts = (20, 8)  # mmsegmentation's chase_db1.py: first 60 of 84 files (20 images) for training

    def official_samples(self, tree: Path) -> list[Sample]:
        samples = []
        for index, image in enumerate(files(tree, r"Image_\d+[LR]\.jpg")):
            stem = image.name[: -len(".jpg")]
            masks = tuple((m, m.name) for m in files(image.parent, rf"{stem}_(1st|2nd)HO\.png"))
            samples.append(Sample(image, stem, "train" if index < 20 else "val", masks))
        return samples


@register_preparer
class HRFPreparer(RetinalPreparer):
    """HRF: 15 healthy, 15 glaucoma and 15 diabetic-retinopathy images of 3504x2336; 5 of each for training."""

    name = "hrf"
    dirname = "HRF"
    description = "HRF retinal vessels: 15 train / 30 val images (checksums: sha256 published by torch-em)"
    size = "260 MB download"
    license = "CC BY 4.0 (https://www5.cs.fau.de/research/data/fundus-images/)"
    categories = ("healthy", "glaucoma", "diabetic_retinopathy")
    bundles = (Bundle("the official release", tuple(f"{c}{s}.zip" for c in categories for s in ("", "_manualsegm")),
                      "https://www5.cs.fau.de/research/data/fundus-images/"),
               ssseg_bundle("HRF.tar.gz"))
    # sha256 from constantinpape/torch-em torch_em/data/datasets/medical/hrf.py
    sources = [
        {"url": f"https://www5.cs.fau.de/fileadmin/research/datasets/fundus-images/{name}", "filename": name,
         "sha256": digest, "checksum_from": "torch-em (torch_em/data/datasets/medical/hrf.py)"}
        for name, digest in (
            ("healthy.zip", "a4ce863b87371cecca8c841c4f7d8b06e39c5298fc78b103c35781bdb7eff389"),
            ("healthy_manualsegm.zip", "2f8c67ee83e9ba16707119aa9ad98ad978c70566d467fe84b328854528ef16b8"),
            ("glaucoma.zip", "c3428a5eb971ce3165f21463c3e6bf0758531e30035303236b785e6b2d005071"),
            ("glaucoma_manualsegm.zip", "ad3a0a39d2226a66da2c4072e031e23be9d27c8804e9a314db3ae757fc6f910a"),
            ("diabetic_retinopathy.zip", "278630bea52c2096dbfa4b6486647ea60e56db1d67f1308dab2ff4383481a244"),
            ("diabetic_retinopathy_manualsegm.zip",
             "5d949ed31d4b825f33b7b14123d21f2562588c8bcbaf33984ddd51ed706d6dbd"),
        )
    ]
    mask_name = "{id}"  # the image's own file name
    counts = (15, 30)  # mmsegmentation's hrf.py: TRAINING_LEN = 5 of HRF_LEN = 15 per category

    def official_samples(self, tree: Path) -> list[Sample]:
        samples = []
        for code in ("h", "g", "dr"):
            for index, image in enumerate(files(tree, rf"\d+_{code}\.jpe?g")):
                stem = image.name.split(".")[0]
                masks = tuple((m, f"{stem}.png") for m in files(tree, rf"{stem}\.tif"))
                samples.append(Sample(image, stem, "train" if index < 5 else "val", masks))
        return samples
