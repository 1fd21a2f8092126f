import io
import math
import zlib

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image

from fishnet_train.data.decoding.images import (
    UndecodableError, decode_rgb, jpeg_frame, load_rgb, open_image, scale_box, to_rgb,
)


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


def encoded(img: Image.Image, fmt: str = "JPEG", **save_kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_kwargs)
    return buf.getvalue()


def noise(width: int, height: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def hwc(pixels: torch.Tensor) -> np.ndarray:
    return pixels.permute(1, 2, 0).numpy()


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def sof(marker: int, width: int, height: int, components: int = 1, precision: int = 8) -> bytes:
    specs = b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    return segment(marker, bytes([precision]) + height.to_bytes(2, "big") + width.to_bytes(2, "big")
                   + bytes([components]) + specs)


SOI = b"\xff\xd8"


def test_sizes_over_255_pixels_are_read_from_both_bytes_of_the_frame_header():
    assert jpeg_frame(memoryview(SOI + sof(0xC0, 0x1234, 0x0301, 3))) == (0x1234, 0x0301, 3)


def test_an_extended_sequential_frame_takes_the_fast_path():
    assert jpeg_frame(memoryview(SOI + sof(0xC1, 300, 200, 3))) == (300, 200, 3)


def test_a_segment_longer_than_255_bytes_before_the_frame_is_skipped_whole():
    data = jpeg_bytes()
    assert jpeg_frame(memoryview(data[:2] + segment(0xFE, b"c" * 300) + data[2:])) == (40, 30, 3)


@pytest.mark.parametrize("marker", [0x01, 0xD0, 0xD7, 0xD8])
def test_markers_without_a_length_field_before_the_frame_are_stepped_over(marker):
    data = jpeg_bytes()
    assert jpeg_frame(memoryview(data[:2] + bytes([0xFF, marker]) + data[2:])) == (40, 30, 3)


def test_a_frame_header_cut_right_after_its_component_count_still_gives_the_size():
    header = SOI + sof(0xC0, 50, 20, 3)
    assert jpeg_frame(memoryview(header[:12])) == (50, 20, 3)
    assert jpeg_frame(memoryview(header[:11])) is None


@pytest.mark.parametrize("width, height", [(0, 16), (16, 0), (0, 0)])
def test_a_frame_of_zero_width_or_height_is_left_to_pillow(width, height):
    # A height of 0 means "given by a DNL marker later": simplejpeg cannot be told a size for it.
    assert jpeg_frame(memoryview(SOI + sof(0xC0, width, height))) is None


@pytest.mark.parametrize("marker", [0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF])
def test_a_lossless_arithmetic_or_hierarchical_frame_is_left_to_pillow_whatever_follows(marker):
    assert jpeg_frame(memoryview(SOI + sof(marker, 16, 16) + sof(0xC0, 16, 16))) is None


@pytest.mark.parametrize("marker", [0xC4, 0xC8, 0xCC])
def test_huffman_and_arithmetic_tables_before_the_frame_are_skipped(marker):
    assert jpeg_frame(memoryview(SOI + segment(marker, b"\0" * 5) + sof(0xC0, 16, 16))) == (16, 16, 1)


def test_nothing_after_the_end_of_image_marker_is_taken_for_the_frame():
    assert jpeg_frame(memoryview(SOI + b"\xff\xd9\x00\x02" + sof(0xC0, 16, 16))) is None


def test_the_exact_decode_is_pillows_and_the_fast_one_is_libjpeg_turbos_fast_idct_and_upsampling():
    data = encoded(Image.fromarray(noise(40, 30)), quality=90)
    image = open_image(data)
    assert (image.width, image.height, image.pixels) == (40, 30, None)
    assert np.array_equal(hwc(image.decode()), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    fast = simplejpeg.decode_jpeg(data, "RGB", fastdct=True, fastupsample=True)
    assert np.array_equal(hwc(image.decode(fast=True)), fast)
    assert not np.array_equal(fast, hwc(image.decode()))


@pytest.mark.parametrize("size", [(64, 2), (2, 64), (333, 251)])
def test_a_reduced_decode_is_the_size_divided_and_rounded_up_on_each_side(size):
    image = open_image(encoded(Image.fromarray(noise(*size))))
    for reduction in (1, 2, 4, 8):
        expected = (3, math.ceil(size[1] / reduction), math.ceil(size[0] / reduction))
        assert tuple(image.decode(reduction).shape) == expected, reduction


def test_a_crop_by_default_is_the_full_size_exact_decode_of_its_box():
    image = open_image(encoded(Image.fromarray(noise(48, 40)), quality=90))
    assert torch.equal(image.crop((5, 7, 30, 20)), image.decode()[:, 7:27, 5:35])


@pytest.mark.parametrize("box, expected", [
    ((0, 0, 640, 480), (0, 0, 80, 60)),
    ((320, 240, 160, 120), (40, 30, 20, 15)),
    ((8, 4, 100, 300), (1, 0, 13, 38)),
])
def test_a_box_scales_with_the_decode_on_each_axis(box, expected):
    assert scale_box(box, (640, 480), (80, 60)) == expected


def test_a_box_keeps_its_full_size_coordinates_when_the_decode_is_not_reduced():
    assert scale_box((3, 5, 7, 11), (16, 24), (16, 24)) == (3, 5, 7, 11)


@pytest.mark.parametrize("box, expected", [
    ((15, 23, 1, 1), (1, 2, 1, 1)),  # rounds onto the pixel past the edge: pulled back inside
    ((5, 5, 1, 1), (1, 1, 1, 1)),  # rounds to nothing: still one pixel
])
def test_a_tiny_box_at_any_place_keeps_a_pixel_inside_the_reduced_image(box, expected):
    assert scale_box(box, (16, 24), (2, 3)) == expected


def test_the_size_of_a_file_pillow_decodes_is_its_decoded_size():
    image = open_image(encoded(Image.fromarray(noise(37, 21)), "PNG"))
    assert (image.width, image.height, tuple(image.pixels.shape)) == (37, 21, (3, 21, 37))


def rgb_of(img: Image.Image) -> np.ndarray:
    return np.asarray(to_rgb(img))


def test_grey_pixels_become_equal_rgb_channels():
    assert rgb_of(Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8), "L")).tolist() == [
        [[0, 0, 0], [77, 77, 77], [255, 255, 255]]]


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L"])
def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(mode):
    values = np.array([[0, 1000, 65535]], dtype=">u2" if mode == "I;16B" else "<u2")
    img = Image.frombytes(mode, (3, 1), values.tobytes())
    assert rgb_of(img)[..., 0].tolist() == [[0, 3, 255]]


@pytest.mark.parametrize("values, expected", [
    ([0, 100, 255], [0, 100, 255]),  # an 8-bit range kept as it is
    ([0, 100, 256], [0, 0, 0]),  # over 255: scaled as 16-bit
    ([-1000, 0, 100000], [0, 0, 255]),  # out of 16 bits: clipped
])
def test_32_bit_grey_is_scaled_only_when_over_8_bits(values, expected):
    img = Image.fromarray(np.array([values], dtype=np.int32), "I")
    assert rgb_of(img)[..., 0].tolist() == [expected]


def test_a_16_bit_grey_png_decodes_to_its_8_bit_scale():
    data = encoded(Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.uint16)), "PNG")
    assert decode_rgb(data)[0].tolist() == [[0, 3, 255]]


def palette(mode: str) -> Image.Image:
    img = Image.new(mode, (3, 1))
    img.putpalette([0, 0, 0, 200, 10, 20, 30, 40, 250])
    return img


def test_a_palette_image_takes_its_colours_from_the_palette():
    img = palette("P")
    img.putdata([1, 2, 0])
    assert rgb_of(img).tolist() == [[[200, 10, 20], [30, 40, 250], [0, 0, 0]]]


def test_the_transparent_palette_entry_becomes_white():
    img = palette("P")
    img.putdata([1, 2, 0])
    img.info["transparency"] = 2
    assert rgb_of(img).tolist() == [[[200, 10, 20], [255, 255, 255], [0, 0, 0]]]


@pytest.mark.parametrize("mode, key", [("RGB", (0, 0, 0)), ("L", 0)])
def test_a_colour_keyed_transparent_png_pixel_becomes_white_as_a_transparent_palette_entry_does(mode, key):
    img = Image.new(mode, (2, 1))
    img.putpixel((1, 0), (200, 10, 20) if mode == "RGB" else 90)
    pixels = decode_rgb(encoded(img, "PNG", transparency=key))
    assert pixels[:, 0, 0].tolist() == [255, 255, 255]
    assert pixels[:, 0, 1].tolist() == ([200, 10, 20] if mode == "RGB" else [90, 90, 90])


@pytest.mark.parametrize("mode, opaque, clear", [
    ("RGBA", (200, 10, 20, 255), (200, 10, 20, 0)),
    ("LA", (90, 255), (90, 0)),
])
def test_transparent_pixels_are_composited_over_white(mode, opaque, clear):
    img = Image.new(mode, (2, 1))
    img.putdata([opaque, clear])
    colour = [*opaque[:-1]] * (3 if mode == "LA" else 1)
    assert rgb_of(img).tolist() == [[colour, [255, 255, 255]]]


def test_a_transparent_palette_alpha_pixel_becomes_white():
    img = palette("PA")
    img.putdata([(1, 255), (2, 0), (0, 255)])
    assert rgb_of(img).tolist() == [[[200, 10, 20], [255, 255, 255], [0, 0, 0]]]


def test_a_cmyk_jpeg_decodes_to_the_same_rgb_as_pillow():
    data = encoded(Image.fromarray(noise(40, 30, 4), "CMYK"), quality=90)
    image = open_image(data)
    assert (image.width, image.height) == (40, 30)
    assert np.array_equal(hwc(image.decode()), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_a_file_that_is_no_image_is_refused_with_a_message_that_says_so():
    with pytest.raises(UndecodableError) as refused:
        decode_rgb(b"plain text, not pixels")
    assert str(refused.value) == "UnidentifiedImageError: not an image file Pillow can read"


@pytest.mark.parametrize("error, message", [
    (EOFError(), "EOFError: unreadable"),
    (ValueError("  broken header\nat byte 12\n"), "ValueError: broken header"),
])
def test_a_refusal_says_the_first_line_of_what_pillow_raised(monkeypatch, error, message):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(Image, "open", fail)
    with pytest.raises(UndecodableError) as refused:
        decode_rgb(encoded(Image.new("RGB", (4, 4)), "PNG"))
    assert str(refused.value) == message


def test_a_jpeg_over_the_pixel_limit_is_refused_with_its_size_in_the_message(monkeypatch):
    data = encoded(Image.new("RGB", (100, 10)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(UndecodableError) as refused:
        open_image(data)
    assert str(refused.value) == ("DecompressionBombError: 100x10 pixels is over PIL.Image.MAX_IMAGE_PIXELS=500 "
                                  "(a decompression bomb?)")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_file_of_exactly_the_pixel_limit_decodes_on_both_paths(monkeypatch, fmt):
    data = encoded(Image.new("RGB", (100, 10)), fmt)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert decode_rgb(data).shape == (3, 10, 100)


def test_no_pixel_limit_lets_any_size_decode(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert decode_rgb(encoded(Image.new("RGB", (100, 10)))).shape == (3, 10, 100)


def test_a_file_just_over_the_limit_that_pillow_only_warns_about_is_refused_too(monkeypatch):
    data = encoded(Image.new("RGB", (100, 10)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # under twice the size: Pillow only warns
    with pytest.raises(UndecodableError) as refused:
        decode_rgb(data)
    assert str(refused.value).startswith("DecompressionBombError: Image size (1000 pixels) exceeds limit of 600")


def test_a_file_pillow_warns_about_for_another_reason_still_decodes():
    png = encoded(Image.fromarray(noise(4, 3)), "PNG")
    # An animated-PNG header claiming zero frames: Pillow warns and decodes the still image.
    actl = b"acTL" + bytes(8)
    chunk = len(actl[4:]).to_bytes(4, "big") + actl + zlib.crc32(actl).to_bytes(4, "big")
    ihdr_end = 8 + 25
    with pytest.warns(UserWarning, match="APNG"):
        pixels = decode_rgb(png[:ihdr_end] + chunk + png[ihdr_end:])
    assert np.array_equal(hwc(pixels), noise(4, 3))
