"""The training crop's rectangle decoded alone equals that rectangle of the whole decoded image."""
import io
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fishnet_train.config import DataConfig
from fishnet_train.data.decoding import jpeg_region
from fishnet_train.data.decoding.images import UndecodableError, open_image, scale_box
from fishnet_train.data.loaders import build_train_loader
from fishnet_train.data.samplers import TrainSampler
from fishnet_train.data.transforms import TrainTransform, random_resized_crop_box


def can_build_the_binding() -> bool:
    """A C compiler and libjpeg-turbo's headers, as on the machines the suite runs on."""
    return bool(shutil.which("cc") or shutil.which("gcc")) and os.path.exists("/usr/include/jpeglib.h")


def test_the_binding_is_built_where_a_compiler_and_the_headers_are():
    """Else every test of the region decoder below would skip, and the install would have silently lost it."""
    if not can_build_the_binding():
        pytest.skip("no C compiler or no /usr/include/jpeglib.h here")
    assert jpeg_region.region_decoding_available(), jpeg_region.region_decoder_notice()
    assert jpeg_region.region_decoder_notice() is None


needs_binding = pytest.mark.skipif(not jpeg_region.region_decoding_available(),
                                   reason=jpeg_region.region_decoder_notice() or "")


def photo(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Gradients with noise in every channel: chroma upsampling differences at a box's edge show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x * y) % 255], -1)
    pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


def jpeg(img: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, **options)
    return out.getvalue()


# Layouts ImageNet's files come in, each at an odd size: iMCUs cut by the right and bottom edges.
LAYOUTS = {
    "baseline_420": lambda: jpeg(photo(333, 251), subsampling=2),
    "baseline_444": lambda: jpeg(photo(301, 199), subsampling=0),
    "baseline_422": lambda: jpeg(photo(257, 263), subsampling=1),
    "progressive_420": lambda: jpeg(photo(341, 227), subsampling=2, progressive=True),
    "restart_markers": lambda: jpeg(photo(319, 239), subsampling=2, restart_marker_blocks=3),
    "progressive_restart": lambda: jpeg(photo(275, 183), progressive=True, restart_marker_rows=1),
    "grayscale": lambda: jpeg(photo(287, 211, "L")),
    "tiny": lambda: jpeg(photo(17, 9), subsampling=2),
}


def edge_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Boxes touching each edge and corner, the whole image, single pixels, iMCU-aligned edges, random ones."""
    w, h = max(1, width // 3), max(1, height // 3)
    boxes = [(0, 0, width, height), (0, 0, w, h), (width - w, 0, w, h), (0, height - h, w, h),
             (width - w, height - h, w, h), (0, 0, 1, 1), (width - 1, height - 1, 1, 1), (0, h, width, h),
             (w, 0, w, height), (min(16, width - 1), min(16, height - 1), 1, 1)]
    if width > 48 and height > 48:
        boxes += [(16, 16, 16, 16), (32, 32, width - 48, height - 40), (15, 17, 17, 15)]
    rng = random.Random(width * height)
    boxes += [random_resized_crop_box(width, height, (0.08, 1.0), (3 / 4, 4 / 3), rng) for _ in range(30)]
    return boxes


@needs_binding
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("fast", [False, True], ids=["exact_idct", "fast_idct"])
def test_region_equals_that_box_of_the_whole_decoded_image(layout, fast):
    image = open_image(LAYOUTS[layout]())
    assert image.pixels is None  # the libjpeg-turbo path, not Pillow's
    for reduction in (1, 2, 4, 8):
        whole = image.decode(reduction, fast)
        for box in edge_boxes(image.width, image.height):
            left, top, w, h = scale_box(box, (image.width, image.height), (whole.shape[2], whole.shape[1]))
            region = image.crop(box, reduction, fast, region=True)
            assert region.shape == (3, h, w), (box, reduction)
            assert torch.equal(region, whole[:, top:top + h, left:left + w]), (layout, box, reduction)


@needs_binding
@pytest.mark.parametrize("subsampling", [2, 1, 0], ids=["420", "422", "444"])
def test_a_box_with_an_edge_on_an_imcu_boundary_is_upsampled_as_inside_the_image(subsampling):
    """Decoded with no column beyond it, fancy upsampling would treat such an edge as the image's."""
    data = jpeg(photo(160, 96), subsampling=subsampling)
    whole = open_image(data).decode()
    for left, top, w, h in [(32, 16, 64, 48), (16, 8, 16, 16), (48, 0, 32, 96), (0, 32, 112, 32)]:
        box = jpeg_region.decode_box(data, (left, top, w, h), 1, False)
        assert torch.equal(box, whole[:, top:top + h, left:left + w]), (left, top, w, h)


@needs_binding
def test_rows_below_the_box_are_never_read():
    """The decoder stops after the box's last row: a file cut off below it still gives the box."""
    data = jpeg(photo(200, 400), subsampling=2)
    cut = data[:len(data) // 2]
    box = jpeg_region.decode_box(cut, (10, 20, 100, 60), 1, False)
    assert torch.equal(box, open_image(data).decode()[:, 20:80, 10:110])
    with pytest.raises(ValueError):
        jpeg_region.decode_box(cut, (10, 300, 100, 60), 1, False)


@needs_binding
def test_a_cut_off_file_is_as_undecodable_with_region_decoding_as_without():
    """Whether a truncated file counts as undecodable must not depend on where its crop falls."""
    data = jpeg(photo(200, 400), subsampling=2)
    image = open_image(data[:len(data) // 2])
    for box in [(10, 20, 100, 60), (10, 300, 100, 60)]:
        with pytest.raises(UndecodableError):
            image.crop(box, region=False)
        with pytest.raises(UndecodableError):
            image.crop(box, region=True)


@needs_binding
def test_a_file_libjpeg_warns_about_goes_the_whole_image_way():
    """Corrupt data above the box is a warning while its rows are skipped: an error for the region
    decoder, so the crop comes from the whole-image path (which hands the file to Pillow)."""
    data = bytearray(jpeg(photo(120, 240), subsampling=2))
    middle = len(data) // 3
    data[middle:middle + 2] = b"\xff\xd3"  # a restart marker in a file without restart intervals
    image = open_image(bytes(data))
    with pytest.raises(ValueError, match="Corrupt JPEG data"):
        jpeg_region.decode_box(bytes(data), (0, 200, 120, 40), 1, False)
    box = (5, 200, 100, 30)
    assert torch.equal(image.crop(box, region=True), image.crop(box, region=False))


@needs_binding
def test_the_train_transform_decodes_the_region_only_when_asked(monkeypatch):
    calls = []
    real = jpeg_region.decode_box
    monkeypatch.setattr("fishnet_train.data.decoding.images.decode_box", lambda *a: calls.append(a) or real(*a))
    image = open_image(jpeg(photo(300, 200), subsampling=2))
    whole_decode = TrainTransform(64, (0.08, 1.0), (3 / 4, 4 / 3), True, 0.1, decode="fast")
    region_decode = TrainTransform(64, (0.08, 1.0), (3 / 4, 4 / 3), True, 0.1, decode="fast", region=True)
    for seed in range(20):
        expected = whole_decode(image, random.Random(seed))
        assert not calls
        got = region_decode(image, random.Random(seed))
        assert len(calls) == 1 and torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        calls.clear()


@pytest.mark.parametrize("region", [True, False])
def test_data_region_decode_reaches_the_training_transform(tmp_path, region):
    from fishnet_train.data.index import SampleIndex, Split
    split = Split(str(tmp_path), ["a"], SampleIndex.from_pairs([("a/x.jpg", 0)]))
    data = DataConfig(root=str(tmp_path), batch_size=1, workers=0, region_decode=region)
    loader = build_train_loader(split, data, TrainSampler(1, 1, 0, 1, 0), 1, False)
    assert loader.dataset.transform.region is region


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_without_the_binding_the_whole_image_is_decoded_and_one_line_says_why():
    """As on a machine with no compiler or no libjpeg-turbo headers at install: the import fails."""
    code = (
        "import sys, random; sys.modules['fishnet_train.data.decoding._jpeg_region'] = None\n"
        "from fishnet_train.data.decoding import jpeg_region\n"
        "from fishnet_train.data.transforms import TrainTransform\n"
        "from fishnet_train.data.decoding.images import open_image\n"
        "assert not jpeg_region.region_decoding_available()\n"
        "print(jpeg_region.region_decoder_notice())\n"
        "image = open_image(sys.stdin.buffer.read())\n"
        "out, _ = TrainTransform(32, (0.5, 1.0), (1.0, 1.0), False, 0.0, decode='fast', region=True)("
        "image, random.Random(0))\n"
        "print(tuple(out.shape))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], input=jpeg(photo(64, 48)), capture_output=True, check=True)
    notice, shape = run.stdout.decode().strip().splitlines()
    assert notice.startswith("region decoding is not available (") and "libjpeg62-turbo-dev" in notice
    assert shape == "(32, 32, 3)"


def test_the_install_line_names_each_missing_prerequisite_and_the_packages(tmp_path, monkeypatch):
    import sysconfig
    include, jpeg_headers = tmp_path / "include", tmp_path / "jpeg"
    include.mkdir()
    jpeg_headers.mkdir()
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"include": str(include)})
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: {"CC": "no-such-cc -pthread"}.get(name))
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it
    monkeypatch.setenv("CPATH", str(jpeg_headers))
    monkeypatch.setattr(jpeg_region, "_MISSING", "No module named 'fishnet_train.data.decoding._jpeg_region'")
    expected = ["a C compiler", "Python's headers (Python.h)"]
    if not any(os.path.isfile(f"{folder}/jpeglib.h") for folder in ("/usr/include", "/usr/local/include")):
        expected.append("libjpeg-turbo's headers (jpeglib.h)")
    assert jpeg_region.missing_build_prerequisites() == expected
    (include / "Python.h").write_text("")
    (jpeg_headers / "jpeglib.h").write_text("")
    (tmp_path / "cc").write_text("#!/bin/sh\n")
    (tmp_path / "cc").chmod(0o755)
    assert jpeg_region.missing_build_prerequisites() == []
    (include / "Python.h").unlink()
    line = jpeg_region.build_status()
    assert line.startswith("region decoding is not available (the build lacked Python's headers (Python.h)): ")
    assert "gcc python3-dev libjpeg62-turbo-dev" in line and "run make install" in line and "\n" not in line
    monkeypatch.setattr(jpeg_region, "_MISSING", None)
    assert jpeg_region.build_status() == "region decoder built: training crops decode only their rectangle"


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_the_status_module_prints_the_install_line():
    run = subprocess.run([sys.executable, "-m", "fishnet_train.data.decoding.status"], capture_output=True, text=True,
                         check=True)
    assert run.stdout == jpeg_region.build_status() + "\n" and run.stderr == ""
