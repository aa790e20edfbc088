"""``segkit prepare-data NAME`` end to end on small archives in the real layouts (zip, tar, tgz, split zip).

Official-name archives made here do not have the published checksums, so the tests that use them clear the
preparer's ``sources`` (no checksum known); the checksum tests keep or set them on purpose.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from segkit.api import list_datasets
from segkit.data.prepare import get_preparer, prepare_dataset
from segkit.errors import DataError, DownloadError
from segkit.registry import PREPARERS

from .test_multipart import write_split_zip

ADE = "ADEChallengeData2016"


def png(array: np.ndarray, ext: str = ".png") -> bytes:
    ok, data = cv2.imencode(ext, array)
    assert ok
    return data.tobytes()


def image(seed: int, size: tuple[int, int] = (8, 10), ext: str = ".jpg") -> bytes:
    return png(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8), ext)


def mask(value: int, size: tuple[int, int] = (8, 10)) -> bytes:
    return png(np.full(size, value, np.uint8))


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith((".tgz", ".gz")) else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def ade_files(train: int = 3, val: int = 2, skip_mask: str | None = None) -> dict[str, bytes]:
    files = {}
    for split, folder, count in (("train", "training", train), ("val", "validation", val)):
        for index in range(1, count + 1):
            name = f"ADE_{split}_{index:08d}"
            files[f"{ADE}/images/{folder}/{name}.jpg"] = image(index)
            if name != skip_mask:
                files[f"{ADE}/annotations/{folder}/{name}.png"] = mask(index)
    return files


@pytest.fixture
def no_checksums(monkeypatch):
    """Make a registered preparer forget its sources (and so their published checksums)."""
    def forget(name: str):
        preparer = get_preparer(name)
        monkeypatch.setattr(preparer, "sources", [])
        return preparer

    return forget


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ----------------------------------------------------------------------------------------- listing
def test_every_dataset_is_listed_with_size_licence_and_checksum_note():
    rows = {row["name"]: row for row in list_datasets()}
    expected = {"ade20k", "voc", "pascalcontext", "cityscapes", "cocostuff10k", "coco", "lip", "cihp", "atr",
                "mhpv1", "mhpv2", "supervisely", "hrf", "drive", "stare", "chase_db1", "sbushadow", "vspw",
                "darkzurich", "nighttimedriving", "synthetic"}
    assert expected <= set(rows)
    for name in expected - {"synthetic"}:
        assert rows[name]["size"] and rows[name]["license"], name
        preparer = PREPARERS.get(name)
        published = any(s.get(k) for s in preparer.sources for k in ("md5", "sha1", "sha256"))
        note = "checksum" if published else "no published checksum"
        assert note in rows[name]["description"], name
        assert preparer.sources, f"{name} has nothing to download"


# ----------------------------------------------------------------------------------------- ADE20k
def test_ade20k_official_zip_is_extracted_listed_and_counted(tmp_path, no_checksums):
    no_checksums("ade20k")
    archive = write_zip(tmp_path / f"{ADE}.zip", ade_files())
    summary = prepare_dataset("ade20k", tmp_path / "data", from_archive=archive)
    root = tmp_path / "data" / "ADE20k"
    assert summary["root"] == str(root) and (summary["train"], summary["val"]) == (3, 2)
    assert (root / ADE / "train.txt").read_text().split() == [f"ADE_train_{i:08d}" for i in (1, 2, 3)]
    assert (root / ADE / "annotations" / "validation" / "ADE_val_00000002.png").is_file()
    assert summary["check"] == "counts differ from the official release: train has 3 (expected 20210), " \
                               "val has 2 (expected 2000)"
    assert leftovers(tmp_path / "data") == ["ADE20k"]  # no staging folder left
    again = prepare_dataset("ade20k", tmp_path / "data", from_archive=archive)
    assert again["source"] == "already prepared" and again["train"] == 3


def test_a_missing_mask_is_refused_and_nothing_is_left(tmp_path, no_checksums):
    no_checksums("ade20k")
    archive = write_zip(tmp_path / f"{ADE}.zip", ade_files(skip_mask="ADE_train_00000002"))
    with pytest.raises(DataError, match=r"split 'train': 1 of 3 ids have no mask \(e.g. .*ADE_train_00000002.png"):
        prepare_dataset("ade20k", tmp_path / "data", from_archive=archive)
    assert leftovers(tmp_path / "data") == []


def test_path_traversal_entry_is_refused_and_nothing_is_written(tmp_path, no_checksums):
    no_checksums("ade20k")
    files = {**ade_files(), "../escaped.txt": b"evil"}
    archive = write_zip(tmp_path / f"{ADE}.zip", files)
    with pytest.raises(DownloadError, match=r"refusing entry '\.\./escaped\.txt'"):
        prepare_dataset("ade20k", tmp_path / "data", from_archive=archive)
    assert leftovers(tmp_path / "data") == []
    assert not (tmp_path / "escaped.txt").exists()


def test_user_supplied_official_file_with_a_wrong_checksum_is_refused(tmp_path):
    archive = write_zip(tmp_path / f"{ADE}.zip", ade_files())  # the real sources keep GluonCV's sha1
    with pytest.raises(DownloadError, match=r"checksum mismatch: expected sha1 219e1696.*GluonCV"):
        prepare_dataset("ade20k", tmp_path / "data", from_archive=archive)
    assert leftovers(tmp_path / "data") == [] and archive.is_file()  # the user's file is left alone


def test_an_archive_with_another_dataset_is_named_clearly(tmp_path, no_checksums):
    no_checksums("ade20k")
    archive = write_zip(tmp_path / "something.zip", {"photos/a.jpg": image(0)})
    with pytest.raises(DataError, match=r"no folder with ADEChallengeData2016/images/training.*top level: photos"):
        prepare_dataset("ade20k", tmp_path / "data", from_archive=archive)


# ----------------------------------------------------------------------------------------- Cityscapes
def cityscapes_files(split_counts=(("train", 2), ("val", 1))) -> tuple[dict[str, bytes], dict[str, bytes]]:
    images, labels = {"README": b"images"}, {"README": b"labels"}
    for split, count in split_counts:
        for index in range(count):
            city = "aachen" if split == "train" else "frankfurt"
            stem = f"{city}/{city}_000000_{index:06d}"
            images[f"leftImg8bit/{split}/{stem}_leftImg8bit.png"] = image(index, ext=".png")
            labels[f"gtFine/{split}/{stem}_gtFine_labelIds.png"] = mask(7)
            labels[f"gtFine/{split}/{stem}_gtFine_color.png"] = image(index, ext=".png")
    return images, labels


def test_cityscapes_official_pair_of_zips(tmp_path):
    images, labels = cityscapes_files()
    write_zip(tmp_path / "leftImg8bit_trainvaltest.zip", images)
    labels_zip = write_zip(tmp_path / "gtFine_trainvaltest.zip", labels)
    summary = prepare_dataset("cityscapes", tmp_path / "data", from_archive=labels_zip)
    root = tmp_path / "data" / "CityScapes"
    assert (summary["train"], summary["val"]) == (2, 1)
    assert (root / "train.txt").read_text().split() == [
        "aachen/aachen_000000_000000_leftImg8bit", "aachen/aachen_000000_000001_leftImg8bit"]
    assert cv2.imread(str(root / "gtFine/val/frankfurt/frankfurt_000000_000000_gtFine_labelIds.png"), 0).max() == 7


def test_cityscapes_pair_needs_both_files(tmp_path):
    labels_zip = write_zip(tmp_path / "gtFine_trainvaltest.zip", cityscapes_files()[1])
    with pytest.raises(DownloadError, match=r"also needs leftImg8bit_trainvaltest\.zip .*cityscapes-dataset\.com"):
        prepare_dataset("cityscapes", tmp_path / "data", from_archive=labels_zip)


def test_cityscapes_ssseg_split_zip_is_joined(tmp_path):
    images, labels = cityscapes_files()
    files = {f"CityScapes/{k}": v for k, v in {**images, **labels}.items()}
    files["CityScapes/train.txt"] = b"aachen/aachen_000000_000001_leftImg8bit\n"  # the archive's own list is kept
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    parts = write_split_zip(buffer.getvalue(), tmp_path, "CityScapes", disks=12)
    summary = prepare_dataset("cityscapes", tmp_path / "data", from_archive=parts[3])  # any part will do
    assert (summary["train"], summary["val"]) == (1, 1)
    assert leftovers(tmp_path / "data") == ["CityScapes"]
    parts[0].unlink()
    with pytest.raises(DownloadError, match=r"also needs CityScapes\.z01"):
        prepare_dataset("cityscapes", tmp_path / "other", from_archive=parts[-1])


# ----------------------------------------------------------------------------------------- VOC aug
VOC_LISTS = {"train": ["a", "b"], "val": ["c"]}
SBD_LISTS = {"train": ["b", "d", "e"], "val": ["c", "f"]}


def voc_archives(folder: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    from scipy.io import savemat

    voc = {f"VOCdevkit/VOC2012/JPEGImages/{i}.jpg": image(n) for n, i in enumerate("abcdef")}
    voc.update({f"VOCdevkit/VOC2012/SegmentationClass/{i}.png": mask(255) for i in "abc"})  # VOC's own masks
    voc.update({f"VOCdevkit/VOC2012/ImageSets/Segmentation/{s}.txt": "\n".join(ids).encode()
                for s, ids in VOC_LISTS.items()})
    sbd, arrays = {}, {}
    for n, imageid in enumerate("bcdef"):
        arrays[imageid] = np.full((8, 10), n + 1, np.uint8)
        buffer = io.BytesIO()
        savemat(buffer, {"GTcls": {"Segmentation": arrays[imageid], "CategoriesPresent": [n + 1]}})
        sbd[f"benchmark_RELEASE/dataset/cls/{imageid}.mat"] = buffer.getvalue()
    sbd.update({f"benchmark_RELEASE/dataset/{s}.txt": "\n".join(ids).encode() for s, ids in SBD_LISTS.items()})
    return (write_tar(folder / "VOCtrainval_11-May-2012.tar", voc), write_tar(folder / "benchmark.tgz", sbd),
            arrays)


def test_voc_tar_and_sbd_become_trainaug(tmp_path, no_checksums):
    no_checksums("voc")
    voc_tar, _, arrays = voc_archives(tmp_path)
    summary = prepare_dataset("voc", tmp_path / "data", from_archive=voc_tar)
    root = tmp_path / "data" / "VOCdevkit" / "VOC2012"
    lists = root / "ImageSets" / "Segmentation"
    assert (lists / "trainaug.txt").read_text().split() == ["a", "b", "d", "e", "f"]  # SBD + VOC train - VOC val
    assert (summary["train"], summary["val"], summary["trainaug"]) == (2, 1, 5)
    assert "trainaug has 5 (expected 10582)" in summary["check"]
    for imageid in "def":  # SBD-only ids: SBD's mask, in both folders
        assert np.array_equal(cv2.imread(str(root / "SegmentationClass" / f"{imageid}.png"), 0), arrays[imageid])
    assert np.array_equal(cv2.imread(str(root / "SegmentationClassAug" / "b.png"), 0), arrays["b"])
    assert cv2.imread(str(root / "SegmentationClass" / "b.png"), 0).max() == 255  # VOC's own mask is kept


def test_voc_without_scipy_is_a_clear_error(tmp_path, no_checksums, monkeypatch):
    no_checksums("voc")
    voc_tar, _, _ = voc_archives(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "scipy.io", None)
    with pytest.raises(DataError, match=r"needs scipy: pip install scipy"):
        prepare_dataset("voc", tmp_path / "data", from_archive=voc_tar)
    assert leftovers(tmp_path / "data") == []


def test_voc_published_md5_is_checked(tmp_path):
    voc_tar, sbd_tgz, _ = voc_archives(tmp_path)
    with pytest.raises(DownloadError, match=r"VOCtrainval_11-May-2012\.tar: checksum mismatch: expected md5 "
                                            r"6cd6e144f989b92b3379bac3b3de84fd.*torchvision"):
        prepare_dataset("voc", tmp_path / "data", from_archive=voc_tar)


# ----------------------------------------------------------------------------------------- retinal (STARE)
def test_stare_official_tars_are_converted(tmp_path, no_checksums):
    import gzip

    no_checksums("stare")
    vessels = np.zeros((6, 7, 3), np.uint8)
    vessels[2:4] = 255
    images = {f"im{i:04d}.ppm.gz": gzip.compress(image(i, (6, 7), ".ppm")) for i in range(1, 21)}
    write_tar(tmp_path / "stare-images.tar", images)
    for who in ("ah", "vk"):
        write_tar(tmp_path / f"labels-{who}.tar",
                  {f"im{i:04d}.{who}.ppm.gz": gzip.compress(png(vessels, ".ppm")) for i in range(1, 21)})
    summary = prepare_dataset("stare", tmp_path / "data", from_archive=tmp_path / "labels-ah.tar")
    root = tmp_path / "data" / "STARE"
    assert (summary["train"], summary["val"], summary["check"]) == (10, 10, "ok (counts match the official release)")
    assert (root / "train.txt").read_text().split()[0] == "im0001.png"
    assert (root / "val.txt").read_text().split()[0] == "im0011.png"
    label = cv2.imread(str(root / "annotations" / "validation" / "im0011.ah.png"), cv2.IMREAD_UNCHANGED)
    assert label.shape == (6, 7) and set(np.unique(label)) == {0, 1}
    assert (root / "annotations" / "training" / "im0001.vk.png").is_file()


# ----------------------------------------------------------------------------------------- PASCAL-Context
def context_archives(folder: Path, labels_txt: bytes | None = None) -> Path:
    from scipy.io import savemat

    ids = ["2008_000001", "2008_000002", "2008_000003"]
    voc = {f"VOCdevkit/VOC2010/JPEGImages/{i}.jpg": image(n) for n, i in enumerate(ids)}
    voc["VOCdevkit/VOC2010/ImageSets/Main/train.txt"] = b"2008_000001\n2008_000002\n"
    voc["VOCdevkit/VOC2010/ImageSets/Main/val.txt"] = b"2008_000003\n"
    context = {}
    for imageid in ids:
        label_map = np.array([[0, 1, 2, 458], [259, 260, 5, 2]] * 4, np.uint16)  # 8x4 full-label ids
        buffer = io.BytesIO()
        savemat(buffer, {"LabelMap": label_map})
        context[f"trainval/{imageid}.mat"] = buffer.getvalue()
    if labels_txt is not None:
        context["labels.txt"] = labels_txt
    write_tar(folder / "trainval.tar.gz", context)
    return write_tar(folder / "VOCtrainval_03-May-2010.tar", voc)


def test_pascal_context_mat_annotations_become_59_class_masks(tmp_path, no_checksums):
    no_checksums("pascalcontext")
    summary = prepare_dataset("pascalcontext", tmp_path / "data", from_archive=context_archives(tmp_path))
    root = tmp_path / "data" / "VOCdevkit" / "VOC2010"
    assert (summary["train"], summary["val"]) == (2, 1)
    assert (root / "ImageSets" / "SegmentationContext" / "val.txt").read_text().split() == ["2008_000003"]
    label = cv2.imread(str(root / "SegmentationClassContext" / "2008_000002.png"), cv2.IMREAD_UNCHANGED)
    # 0 and 1 (accordion) and 5 are not among the 59 -> background; 2 aeroplane, 458 wood, 259 mountain, 260 mouse
    assert label[:2].tolist() == [[0, 0, 1, 59], [35, 36, 0, 1]]


def test_pascal_context_labels_txt_decides_the_ids_by_name(tmp_path, no_checksums):
    from segkit.data.prepare.pascalcontext import CONTEXT_NAMES

    no_checksums("pascalcontext")
    lines = [f"{5 if name == 'aeroplane' else 1000 + k}: {name}" for k, name in enumerate(CONTEXT_NAMES)]
    archive = context_archives(tmp_path, ("\n".join(["1: accordion", *lines]) + "\n").encode())
    prepare_dataset("pascalcontext", tmp_path / "data", from_archive=archive)
    label = cv2.imread(str(tmp_path / "data/VOCdevkit/VOC2010/SegmentationClassContext/2008_000001.png"), -1)
    assert label[:2].tolist() == [[0, 0, 0, 0], [0, 0, 1, 0]]  # only id 5 (aeroplane here) is a class


# ----------------------------------------------------------------------------------------- retinal (others)
def vessel_mask(ext: str) -> bytes:
    vessels = np.zeros((6, 7), np.uint8)
    vessels[:, 3] = 255
    if ext == ".gif":  # DRIVE's manual masks are GIFs; OpenCV may not write them, Pillow does
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(vessels).save(buffer, format="GIF")
        return buffer.getvalue()
    return png(vessels, ext)


def retinal_archives(name: str, folder: Path) -> Path:
    size = (6, 7)
    if name == "chase_db1":
        files = {f"Image_{n:02d}{eye}.jpg": image(n, size) for n in range(1, 15) for eye in "LR"}
        files.update({f"{k[:-4]}_{who}HO.png": vessel_mask(".png") for k in list(files) for who in ("1st", "2nd")})
        return write_zip(folder / "CHASEDB1.zip", files)
    if name == "drive":
        for part, numbers in (("training", range(21, 41)), ("test", range(1, 21))):
            files = {f"{part}/images/{n:02d}_{part}.tif": image(n, size, ".tif") for n in numbers}
            files.update({f"{part}/1st_manual/{n:02d}_manual1.gif": vessel_mask(".gif") for n in numbers})
            write_zip(folder / f"{part}.zip", files)
        return folder / "training.zip"
    for category, code in (("healthy", "h"), ("glaucoma", "g"), ("diabetic_retinopathy", "dr")):
        write_zip(folder / f"{category}.zip", {f"{n:02d}_{code}.jpg": image(n, size) for n in range(1, 16)})
        write_zip(folder / f"{category}_manualsegm.zip",
                  {f"{n:02d}_{code}.tif": vessel_mask(".tif") for n in range(1, 16)})
    return folder / "healthy.zip"


@pytest.mark.parametrize("name,counts,first_train,first_mask", [
    ("chase_db1", (20, 8), "Image_01L.png", "annotations/training/Image_01L_1stHO.png"),
    ("drive", (20, 20), "21.png", "annotations/training/21_manual1.png"),
    ("hrf", (15, 30), "01_dr.png", "annotations/training/01_dr.png"),
])
def test_retinal_official_files_are_converted(tmp_path, no_checksums, name, counts, first_train, first_mask):
    no_checksums(name)
    summary = prepare_dataset(name, tmp_path / "data", from_archive=retinal_archives(name, tmp_path))
    root = tmp_path / "data" / get_preparer(name).dirname
    assert (summary["train"], summary["val"]) == counts
    assert summary["check"] == "ok (counts match the official release)"
    assert (root / "train.txt").read_text().split()[0] == first_train
    assert (root / "images" / "training" / first_train).is_file()
    label = cv2.imread(str(root / first_mask), cv2.IMREAD_UNCHANGED)
    assert label.shape == (6, 7) and label[:, 3].tolist() == [1] * 6 and label[:, 0].tolist() == [0] * 6


# ----------------------------------------------------------------------------------------- COCO (SSSeg parts)
def test_coco_numbered_parts_with_the_stuff_maps_still_zipped(tmp_path):
    maps = io.BytesIO()
    with zipfile.ZipFile(maps, "w") as zf:
        for split, count in (("train", 3), ("val", 2)):
            for n in range(count):
                zf.writestr(f"{split}2017/{n:012d}.png", mask(n))
    files = {f"COCO/{split}2017/{n:012d}.jpg": image(n) for split, count in (("train", 3), ("val", 2))
             for n in range(count)}
    files["COCO/annotations/instances_train2017.json"] = b"{}"
    files["COCO/stuffthingmaps_trainval2017.zip"] = maps.getvalue()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    data, size = buffer.getvalue(), -(-len(buffer.getvalue()) // 18)
    for index in range(18):
        (tmp_path / f"COCO.zip.{index + 1:03d}").write_bytes(data[index * size : (index + 1) * size])
    summary = prepare_dataset("coco", tmp_path / "data", from_archive=tmp_path / "COCO.zip.001")
    root = tmp_path / "data" / "COCO"
    assert (summary["train"], summary["val"]) == (3, 2)
    assert (root / "val2017" / f"{1:012d}.png").is_file() and not (root / "stuffthingmaps_trainval2017.zip").exists()
