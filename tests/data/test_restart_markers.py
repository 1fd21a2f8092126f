"""JPEGs rewritten with a restart marker after every MCU: the same pixels, and a training crop that reads only
the MCUs around it."""
import io
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from fishnet_train.data.decoding import jpeg_region
from fishnet_train.data.decoding.images import open_image, scale_box
from fishnet_train.data.decoding.restart_markers import ALREADY, DONE, KEPT, REWRITTEN, TEMPORARY, rewrite_tree

from .test_jpeg_region import LAYOUTS, edge_boxes, jpeg, needs_binding, photo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKED = {name: lambda make=make: jpeg_region.add_restart_markers(make()) for name, make in LAYOUTS.items()}


def mcu_segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each MCU's entropy-coded data in a file of one scan with a marker after every MCU."""
    sos = data.index(b"\xff\xda")
    pos = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    segments, start = [], pos
    while True:
        pos = data.index(b"\xff", pos)
        if data[pos + 1] == 0x00:
            pos += 2
            continue
        segments.append((start, pos))
        if data[pos + 1] == 0xD9:
            return segments
        start = pos = pos + 2


@needs_binding
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_rewriting_keeps_every_pixel_and_adds_a_marker_after_every_mcu(layout):
    original = LAYOUTS[layout]()
    marked = jpeg_region.add_restart_markers(original)
    assert not jpeg_region.has_mcu_restarts(original) and jpeg_region.has_mcu_restarts(marked)
    assert torch.equal(open_image(marked).decode(), open_image(original).decode())
    image = Image.open(io.BytesIO(marked))
    mcu_width = 8 * max(layer[1] for layer in image.layer) if len(image.layer) > 1 else 8
    mcu_height = 8 * max(layer[2] for layer in image.layer) if len(image.layer) > 1 else 8
    assert len(mcu_segments(marked)) == -(-image.width // mcu_width) * -(-image.height // mcu_height)


@needs_binding
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("fast", [False, True], ids=["exact_idct", "fast_idct"])
def test_a_box_cut_from_the_mcus_around_it_equals_that_box_of_the_whole_image(layout, fast):
    original, marked = open_image(LAYOUTS[layout]()), open_image(MARKED[layout]())
    for reduction in (1, 2, 4, 8):
        whole = original.decode(reduction, fast)
        for box in edge_boxes(original.width, original.height):
            left, top, w, h = scale_box(box, (original.width, original.height), (whole.shape[2], whole.shape[1]))
            region = marked.crop(box, reduction, fast, region=True)
            assert torch.equal(region, whole[:, top:top + h, left:left + w]), (layout, box, reduction)


@needs_binding
def test_the_mcus_away_from_the_box_are_not_read():
    """An emptied MCU above, left of, right of or below the box is corrupt data (libjpeg warns: the
    file's whole decode refuses it), yet the box comes out exact: only the MCUs around it were decoded."""
    original = jpeg(photo(160, 160), subsampling=2)  # 10 x 10 MCUs of 16 x 16
    marked = jpeg_region.add_restart_markers(original)
    segments = mcu_segments(marked)
    whole = open_image(original).decode()
    box = (48, 48, 64, 64)  # MCUs 3..6 in each direction, with one pixel of context: 2..7
    for row, column in [(0, 5), (1, 4), (5, 0), (5, 9), (9, 5), (8, 8)]:
        start, end = segments[row * 10 + column]
        emptied = marked[:start] + marked[end:]
        with pytest.raises(ValueError, match="Corrupt JPEG data"):
            jpeg_region.decode_box(emptied, (0, 0, 160, 160), 1, False)
        assert torch.equal(jpeg_region.decode_box(emptied, box, 1, False), whole[:, 48:112, 48:112]), (row, column)


@needs_binding
def test_a_file_that_lost_an_mcu_is_not_cut_and_the_crop_comes_from_the_whole_image():
    """Every MCU after a lost one would be taken for its neighbour: the markers out of sequence say so,
    and libjpeg's whole decode resynchronises at them."""
    original = jpeg(photo(96, 96), subsampling=2)
    marked = jpeg_region.add_restart_markers(original)
    start, _ = mcu_segments(marked)[7]
    lost = marked[:start] + marked[mcu_segments(marked)[8][0]:]  # MCU 7's data and the marker after it
    image, box = open_image(lost), (40, 40, 30, 30)
    assert torch.equal(image.crop(box, region=True), image.crop(box, region=False))


@needs_binding
def test_rewriting_keeps_exif_and_icc_profile_and_refuses_corrupt_files():
    icc, exif = b"an icc profile" * 10, Image.Exif()
    exif[0x010F] = "a camera"
    data = jpeg(photo(64, 48), icc_profile=icc, exif=exif.tobytes())
    marked = Image.open(io.BytesIO(jpeg_region.add_restart_markers(data)))
    assert marked.info["icc_profile"] == icc and marked.getexif()[0x010F] == "a camera"
    with pytest.raises(ValueError):
        jpeg_region.add_restart_markers(data[:len(data) // 2])
    with pytest.raises(ValueError):
        jpeg_region.add_restart_markers(b"not a jpeg")


def mixed_folder(root) -> dict[str, bytes]:
    """A photo per layout, a PNG, a CMYK JPEG and a cut-off JPEG in class folders; their bytes by path."""
    files = {f"a/{name}.jpg": make() for name, make in LAYOUTS.items()}
    png = io.BytesIO()
    photo(40, 30).save(png, "PNG")
    files["b/picture.png"] = png.getvalue()
    files["b/cmyk.jpg"] = jpeg(photo(40, 30, "CMYK"))
    files["b/cut_off.jpg"] = files["a/baseline_420.jpg"][:700]
    for relative, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, relative)), exist_ok=True)
        with open(os.path.join(root, relative), "wb") as f:
            f.write(data)
    return files


@needs_binding
@pytest.mark.parametrize("workers", [2, 1])
def test_a_folder_is_rewritten_into_another_and_a_second_run_goes_on_from_there(tmp_path, workers):
    files = mixed_folder(tmp_path / "src")
    counts = rewrite_tree(str(tmp_path / "src"), str(tmp_path / "dst"), workers)
    assert counts.files == {REWRITTEN: len(LAYOUTS), ALREADY: 0, KEPT: 3, DONE: 0}
    assert counts.bytes_before == sum(len(files[f"a/{name}.jpg"]) for name in LAYOUTS)
    for relative, data in files.items():
        written = (tmp_path / "dst" / relative).read_bytes()
        if relative.startswith("a/"):
            assert jpeg_region.has_mcu_restarts(written)
            assert torch.equal(open_image(written).decode(), open_image(data).decode())
        else:
            assert written == data, relative
    (tmp_path / "dst/a/tiny.jpg").unlink()  # as if the run had been killed before this file
    (tmp_path / f"dst/a/grayscale.jpg{TEMPORARY}123").write_bytes(b"half written")
    again = rewrite_tree(str(tmp_path / "src"), str(tmp_path / "dst"), workers)
    assert again.files == {REWRITTEN: 1, ALREADY: 0, KEPT: 0, DONE: len(files) - 1}
    assert not list((tmp_path / "dst").rglob(f"*{TEMPORARY}*"))


@needs_binding
def test_a_folder_is_rewritten_in_place_once(tmp_path):
    files = mixed_folder(tmp_path / "data")
    first = rewrite_tree(str(tmp_path / "data"), str(tmp_path / "data"), 2)
    second = rewrite_tree(str(tmp_path / "data"), str(tmp_path / "data"), 2)
    assert first.files[REWRITTEN] == len(LAYOUTS) and first.files[KEPT] == 3
    assert second.files == {REWRITTEN: 0, ALREADY: len(LAYOUTS), KEPT: 3, DONE: 0}
    assert (tmp_path / "data/b/cut_off.jpg").read_bytes() == files["b/cut_off.jpg"]
    assert sorted(p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data").rglob("*.*")) == \
        sorted(files)


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "add_restart_markers.py"), *args],
                          capture_output=True, text=True)


@needs_binding
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_the_tool_rewrites_a_folder_and_says_what_it_did(tmp_path):
    mixed_folder(tmp_path / "src")
    run = run_tool(str(tmp_path / "src"), str(tmp_path / "dst"), "--workers", "2")
    assert run.returncode == 0, run.stderr
    assert f"{len(LAYOUTS)} rewritten (" in run.stdout and "3 kept as they were" in run.stdout


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a folder"), ("inside", "is inside"), ("workers", "--workers must be at least 1")])
def test_the_tool_refuses_bad_arguments_in_one_line(tmp_path, case, message):
    (tmp_path / "src").mkdir()
    args = {"missing": [str(tmp_path / "nothing"), str(tmp_path / "dst")],
            "inside": [str(tmp_path / "src"), str(tmp_path / "src" / "out")],
            "workers": [str(tmp_path / "src"), str(tmp_path / "dst"), "--workers", "0"]}[case]
    run = run_tool(*args)
    assert run.returncode == 2 and message in run.stderr.splitlines()[-1]
    assert not (tmp_path / "dst").exists() and not (tmp_path / "src" / "out").exists()


@needs_binding
def test_the_log_suggests_the_rewrite_only_for_a_jpeg_split_without_the_markers(tmp_path):
    from fishnet_train.data.index import SampleIndex, Split
    from fishnet_train.data.decoding.restart_markers import region_decoding_notes
    files = mixed_folder(tmp_path / "train")
    jpegs = Split(str(tmp_path / "train"), ["a"], SampleIndex.from_pairs([(f"a/{name}.jpg", 0) for name in LAYOUTS]))
    pngs = Split(str(tmp_path / "train"), ["b"], SampleIndex.from_pairs([("b/picture.png", 0)] * 3))
    [note] = region_decoding_notes(True, jpegs)
    assert f"tools/add_restart_markers.py {tmp_path / 'train'} {tmp_path / 'train'}" in note
    assert region_decoding_notes(False, jpegs) == [] and region_decoding_notes(True, pngs) == []
    rewrite_tree(str(tmp_path / "train"), str(tmp_path / "train"), 1)
    assert region_decoding_notes(True, jpegs) == [] and len(files) > len(LAYOUTS)
