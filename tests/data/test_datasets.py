import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fishnet_train.data import ImageFolderDataset, ValTransform, collate, find_split, find_splits, scan_undecodable
from fishnet_train.data.decoding.images import load_rgb
from fishnet_train.errors import UserError


def save(img: Image.Image, path: Path, fmt: str, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kwargs)


def rgb(size=(40, 30), colour=(200, 30, 60)) -> Image.Image:
    return Image.new("RGB", size, colour)


def plant_odd_files(folder: Path) -> tuple[set[str], set[str]]:
    """Valid-but-odd files and undecodable ones; returns (odd names, bad names)."""
    save(rgb().convert("L"), folder / "gray.jpg", "JPEG")
    save(rgb().convert("CMYK"), folder / "cmyk.JPEG", "JPEG")
    save(rgb().convert("P"), folder / "palette.png", "PNG")
    save(rgb().convert("RGBA"), folder / "alpha.png", "PNG")
    save(Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)), folder / "sixteen.png", "PNG")
    save(rgb(), folder / "png_named.jpg", "PNG")
    (folder / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    rgb((200, 200)).save(buf, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    (folder / "text.png").write_text("not an image at all")
    odd = {"gray.jpg", "cmyk.JPEG", "palette.png", "alpha.png", "sixteen.png", "png_named.jpg"}
    return odd, {"empty.jpg", "truncated.jpg", "text.png"}


def test_odd_but_valid_images_load_as_rgb(tmp_path):
    odd, _ = plant_odd_files(tmp_path)
    for name in odd:
        img = load_rgb(str(tmp_path / name))
        assert img.shape == (3, 30, 40) and img.dtype == torch.uint8, name
    for name in odd - {"sixteen.png"}:  # opaque: Pillow's own RGB conversion is the reference
        reference = torch.from_numpy(np.array(Image.open(tmp_path / name).convert("RGB"))).permute(2, 0, 1)
        assert (load_rgb(str(tmp_path / name)).int() - reference.int()).abs().max() <= 1, name


def test_jpeg_fast_path_equals_pillow_up_to_rounding(tmp_path):
    rng = np.random.default_rng(0)
    save(Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)), tmp_path / "x.jpg", "JPEG")
    reference = torch.from_numpy(np.array(Image.open(tmp_path / "x.jpg").convert("RGB"))).permute(2, 0, 1)
    assert (load_rgb(str(tmp_path / "x.jpg")).int() - reference.int()).abs().max() <= 1


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    save(Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)), tmp_path / "g16.png", "PNG")
    assert load_rgb(str(tmp_path / "g16.png"))[:, 0, 0].tolist() == [128, 128, 128]


def test_transparent_pixels_become_white(tmp_path):
    save(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), tmp_path / "clear.png", "PNG")
    assert load_rgb(str(tmp_path / "clear.png"))[:, 0, 0].tolist() == [255, 255, 255]


def split_with_bad_files(tmp_path: Path):
    root = tmp_path / "data" / "val"
    odd, bad = plant_odd_files(root / "a")
    save(rgb(), root / "b" / "fine.png", "PNG")
    (root / "b" / ".DS_Store").write_bytes(b"\x00\x01")
    return find_split(str(tmp_path / "data"), "val"), odd, bad


def test_skip_policy_replaces_bad_files_and_reports_exactly_them(tmp_path):
    split, odd, bad = split_with_bad_files(tmp_path)
    assert not any(p.endswith(".DS_Store") for p, _ in split.samples)  # not an image extension
    dataset = ImageFolderDataset(split, ValTransform(36, 32), train=False, bad_images="skip")
    images, targets, _, skipped = collate([dataset[i] for i in range(len(dataset))])
    assert images.shape == (len(dataset), 32, 32, 3) and images.dtype == torch.uint8
    assert {Path(s.split(":")[0]).name for s in skipped} == bad


def test_error_policy_names_the_file(tmp_path):
    split, _, _ = split_with_bad_files(tmp_path)
    dataset = ImageFolderDataset(split, ValTransform(36, 32), train=False, bad_images="error")
    index = next(i for i, (p, _) in enumerate(split.samples) if p.endswith("empty.jpg"))
    with pytest.raises(UserError, match="empty.jpg"):
        dataset[index]


def test_scan_lists_every_undecodable_file(tmp_path):
    split, _, bad = split_with_bad_files(tmp_path)
    reasons = scan_undecodable([split], workers=0)
    assert {Path(r.split(":")[0]).name for r in reasons} == bad


@pytest.mark.parametrize("layout, message", [
    ({}, "is not a directory"),
    ({"train/a/x.png": 1}, "val not found"),
    ({"train/a/x.png": 1, "val/": 0}, "class folder"),
    ({"train/a/x.png": 1, "train/b/": 0, "val/a/x.png": 1, "val/b/x.png": 1}, "no valid file"),
    ({"train/a/x.png": 1, "val/b/x.png": 1}, "other classes"),
])
def test_bad_layouts_are_one_clear_error_naming_the_path(tmp_path, layout, message):
    root = tmp_path / "data"
    for rel, is_image in layout.items():
        path = root / rel
        if is_image:
            save(rgb(), path, "PNG")
        else:
            path.mkdir(parents=True, exist_ok=True)
    with pytest.raises(UserError, match=message) as info:
        find_splits(str(root))
    assert "\n" not in str(info.value)


def test_a_jpeg_libjpeg_only_warns_about_is_decoded_by_pillow(tmp_path):
    buf = io.BytesIO()
    rgb((64, 48)).save(buf, format="JPEG")
    data = buf.getvalue()
    (tmp_path / "extra.jpg").write_bytes(data[:-2] + b"\x00\x00\x00" + data[-2:])  # bytes before EOI
    reference = torch.from_numpy(np.array(Image.open(tmp_path / "extra.jpg").convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(load_rgb(str(tmp_path / "extra.jpg")), reference)


@pytest.mark.parametrize("train, error", [(False, ValueError), (True, OSError)])
def test_a_transform_error_is_raised_not_counted_as_an_undecodable_file(tmp_path, train, error):
    split, _, _ = split_with_bad_files(tmp_path)

    def broken(image, *args):
        raise error("a bug in a transform")

    with pytest.raises(error, match="a bug in a transform"):
        ImageFolderDataset(split, broken, train=train)[(0, 0) if train else 0]


def test_loader_workers_fork_with_everything_built_before_them_frozen(tmp_path):
    import gc

    from fishnet_train.data import build_loader
    from fishnet_train.data.samplers import EvalSampler
    split, _, _ = split_with_bad_files(tmp_path)
    dataset = ImageFolderDataset(split, ValTransform(36, 32), train=False, bad_images="skip")
    try:
        gc.unfreeze()
        loader = build_loader(dataset, EvalSampler(len(dataset), 0, 1), 4, workers=1, pin_memory=False)
        built_after_the_loader = [[i] for i in range(1000)]  # as the model is, in the trainer
        assert gc.get_freeze_count() == 0
        next(iter(loader))
        assert gc.get_freeze_count() >= 1000 and gc.is_tracked(built_after_the_loader)
        assert not any(built_after_the_loader is o for o in gc.get_objects())  # frozen: out of the collector's reach
    finally:
        gc.unfreeze()
