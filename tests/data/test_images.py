import io

import numpy as np
import pytest
from PIL import Image

from fishnet_train.data.images import UndecodableError, jpeg_frame, load_rgb


def jpeg_bytes(mode: str = "RGB", size=(40, 30), **save_kwargs) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else None).save(buf, format="JPEG", **save_kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("mode, components", [("RGB", 3), ("L", 1), ("CMYK", 4)])
def test_frame_header_gives_size_and_components(mode, components):
    assert jpeg_frame(memoryview(jpeg_bytes(mode, (41, 23)))) == (41, 23, components)


def test_frame_header_found_after_exif_and_in_progressive_files():
    exif = Image.Exif()
    exif[0x010E] = "a description long enough to make a real APP1 segment"
    assert jpeg_frame(memoryview(jpeg_bytes(exif=exif.tobytes(), progressive=True))) == (40, 30, 3)


def test_fill_bytes_between_segments_are_skipped():
    data = jpeg_bytes()
    padded = data[:2] + b"\xff\xff\xff" + data[2:]  # fill bytes are allowed before any marker
    assert jpeg_frame(memoryview(padded)) == (40, 30, 3)


@pytest.mark.parametrize("data", [
    b"",
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 32,
    jpeg_bytes()[:20],  # cut before the frame header
    b"\xff\xd8\xff\xc3\x00\x0b\x08\x00\x10\x00\x10\x01\x01\x11\x00",  # lossless frame: Pillow's job
    b"\xff\xd8\xff\xc0\x00\x0b\x0c\x00\x10\x00\x10\x01\x01\x11\x00",  # 12-bit samples
    b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00",  # image data before any frame header
])
def test_anything_but_an_8_bit_huffman_jpeg_is_left_to_pillow(data):
    assert jpeg_frame(memoryview(data)) is None


@pytest.mark.parametrize("name, fmt", [("big.jpg", "JPEG"), ("big.png", "PNG")])
def test_decompression_bombs_are_refused_on_both_decode_paths(tmp_path, monkeypatch, name, fmt):
    Image.fromarray(np.zeros((100, 100, 3), dtype=np.uint8)).save(tmp_path / name, format=fmt)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UndecodableError, match="DecompressionBombError"):
        load_rgb(str(tmp_path / name))
