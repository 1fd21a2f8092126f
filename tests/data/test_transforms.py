import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from fishnet_train.data.decoding.images import pil_to_tensor, scale_box
from fishnet_train.data.transforms import (
    PCA_EIGVAL, PCA_EIGVEC, BatchPreprocess, TrainTransform, ValTransform, crop_reduction, random_resized_crop_box,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise: resampling differences show up, as on real photos."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (300, 300), (2400, 1600), (68, 120), (257, 1000)])
def test_val_pixels_equal_torchvision_resize_and_center_crop(size):
    img = photo(*size)
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])(img).permute(1, 2, 0)
    ours = ValTransform(256, 224)(pil_to_tensor(img))
    assert ours.shape == reference.shape == (224, 224, 3)
    assert (ours.int() - reference.int()).abs().max() <= 1  # uint8 rounding only


def test_crop_boxes_follow_torchvision_distribution():
    """Area fraction and log-aspect of 4000 boxes each way: same quantiles within sampling noise."""
    torch.manual_seed(0)
    rng = random.Random(0)
    ours, theirs, img = [], [], photo(500, 375)
    for _ in range(4000):
        left, top, w, h = random_resized_crop_box(500, 375, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= left <= 500 - w and 0 <= top <= 375 - h
        ours.append((w * h / (500 * 375), math.log(w / h), (left + w / 2) / 500))
        t, l_, h2, w2 = T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
        theirs.append((w2 * h2 / (500 * 375), math.log(w2 / h2), (l_ + w2 / 2) / 500))
    a, b = np.array(ours), np.array(theirs)
    for column in range(3):
        for q in (0.1, 0.25, 0.5, 0.75, 0.9):
            assert abs(np.quantile(a[:, column], q) - np.quantile(b[:, column], q)) < 0.03, (column, q)


def test_train_crop_equals_pillow_crop_then_resize():
    img = photo(500, 375)
    out, _ = TrainTransform(224, (0.08, 1.0), (3 / 4, 4 / 3), hflip=False, lighting=0.0)(pil_to_tensor(img),
                                                                                         random.Random(1))
    left, top, w, h = random_resized_crop_box(500, 375, (0.08, 1.0), (3 / 4, 4 / 3), random.Random(1))
    expected = np.asarray(img.crop((left, top, left + w, top + h)).resize((224, 224), Image.BILINEAR))
    assert np.abs(out.numpy().astype(int) - expected.astype(int)).max() <= 1


def test_flip_mirrors_the_crop():
    img = pil_to_tensor(photo(64, 48))
    plain = TrainTransform(32, (1.0, 1.0), (4 / 3, 4 / 3), hflip=False, lighting=0.0)
    flipping = TrainTransform(32, (1.0, 1.0), (4 / 3, 4 / 3), hflip=True, lighting=0.0)
    outputs = set()
    for seed in range(20):
        a, _ = plain(img, random.Random(seed))
        b, _ = flipping(img, random.Random(seed))
        assert torch.equal(a, b) or torch.equal(a.flip(1), b)
        outputs.add((a.numpy().tobytes(), torch.equal(a, b)))
    plain_outputs = {a for a, _ in outputs}
    assert len(plain_outputs) == 1  # the whole image every time, never flipped with hflip=False
    assert {same for _, same in outputs} == {True, False}  # hflip=True flips some of them


def test_the_lighting_draws_are_normal_with_the_configured_spread_and_none_when_off():
    img = pil_to_tensor(photo(64, 48))
    alphas = {std: TrainTransform(32, (1.0, 1.0), (4 / 3, 4 / 3), hflip=False, lighting=std)(img, random.Random(3))[1]
              for std in (0.0, 0.1, 0.5)}
    assert not alphas[0.0].any()
    assert alphas[0.1].abs().min() > 0
    torch.testing.assert_close(alphas[0.5], 5 * alphas[0.1])  # the same normal draws, five times the spread


def test_same_seed_same_augmentation_different_seed_different():
    tf = TrainTransform(64, (0.08, 1.0), (3 / 4, 4 / 3), hflip=True, lighting=0.1)
    img = pil_to_tensor(photo(200, 150))
    a, alpha_a = tf(img, random.Random(5))
    b, alpha_b = tf(img, random.Random(5))
    c, _ = tf(img, random.Random(6))
    assert torch.equal(a, b) and torch.equal(alpha_a, alpha_b)
    assert not torch.equal(a, c)


def test_flip_happens_about_half_the_time():
    tf = TrainTransform(32, (1.0, 1.0), (1.0, 1.0), hflip=True, lighting=0.0)
    img = photo(32, 32)
    plain = np.asarray(img)
    flips = sum(not np.array_equal(tf(pil_to_tensor(img), random.Random(s))[0].numpy(), plain)
                for s in range(400))
    assert 150 < flips < 250


def test_batch_preprocess_equals_to_tensor_then_normalize():
    images = torch.randint(0, 256, (2, 40, 30, 3), dtype=torch.uint8)
    ours = BatchPreprocess(MEAN, STD, torch.device("cpu"), channels_last=True)(images)
    reference = T.Normalize(MEAN, STD)(images.permute(0, 3, 1, 2).float() / 255.0)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert ours.is_contiguous(memory_format=torch.channels_last)


def test_lighting_adds_the_alexnet_pca_offset_per_image():
    images = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    alpha = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.0, 0.0]])
    ours = BatchPreprocess(MEAN, STD, torch.device("cpu"), channels_last=False)(images, alpha)
    eigvec, eigval = torch.tensor(PCA_EIGVEC), torch.tensor(PCA_EIGVAL)
    x = images.permute(0, 3, 1, 2).float() / 255.0
    for n in range(2):
        rgb = eigvec @ (alpha[n] * eigval)  # rgb_i = sum_j eigvec[i, j] * alpha_j * eigval_j
        expected = T.Normalize(MEAN, STD)(x[n] + rgb.view(3, 1, 1))
        torch.testing.assert_close(ours[n], expected, rtol=1e-5, atol=1e-5)


def jpeg_image(width: int, height: int, quality: int = 95):
    import io

    from fishnet_train.data.decoding.images import open_image
    buf = io.BytesIO()
    photo(width, height).save(buf, format="JPEG", quality=quality)
    return open_image(buf.getvalue())


def test_the_reduction_keeps_the_crop_at_least_the_output_size():
    assert [crop_reduction(w, h, 224) for w, h in [(223, 500), (447, 448), (448, 448), (900, 1000), (1800, 1792)]] \
        == [1, 1, 2, 4, 8]


def test_the_crop_box_rounds_onto_the_reduced_image():
    assert scale_box((100, 50, 200, 101), (500, 375), (250, 188)) == (50, 25, 100, 51)
    assert scale_box((499, 374, 1, 1), (500, 375), (63, 47)) == (62, 46, 1, 1)  # never empty, never outside


@pytest.mark.parametrize("decode", ["reduced", "fast"])
def test_reduced_decodes_draw_the_same_crop_and_give_nearly_the_same_pixels(decode, monkeypatch):
    from fishnet_train.data.decoding import images
    decoded, real = [], images.simplejpeg.decode_jpeg

    def recording_decode(*args, **kwargs):
        out = real(*args, **kwargs)
        decoded.append(out.shape)
        return out

    monkeypatch.setattr(images.simplejpeg, "decode_jpeg", recording_decode)
    image = jpeg_image(640, 480)
    exact = TrainTransform(64, (0.08, 1.0), (3 / 4, 4 / 3), hflip=True, lighting=0.1, decode="exact")
    reduced = TrainTransform(64, (0.08, 1.0), (3 / 4, 4 / 3), hflip=True, lighting=0.1, decode=decode)
    differences = []
    for seed in range(30):
        (a, alpha_a), (b, alpha_b) = exact(image, random.Random(seed)), reduced(image, random.Random(seed))
        assert torch.equal(alpha_a, alpha_b)  # the same draws after the decode: same lighting (and flip)
        differences.append((a.int() - b.int()).abs().float().mean().item())
    assert {shape[0] for shape in decoded[1::2]} >= {240, 120}  # reduced by 2 and by 4
    assert {shape[0] for shape in decoded[0::2]} == {480}  # exact: always every pixel
    # Noise of std 20 on every pixel is the worst case: on the 1,000 ImageNet samples the means are
    # 0.08 (reduced) and 1.2 (fast) levels (docs/data.md).
    assert sum(differences) / len(differences) < (2.0 if decode == "reduced" else 4.0)


def test_an_exact_decode_crops_the_full_image_as_a_tensor_input_does():
    image = jpeg_image(300, 200)
    transform = TrainTransform(32, (0.08, 1.0), (3 / 4, 4 / 3), hflip=True, lighting=0.1, decode="exact")
    a, _ = transform(image, random.Random(3))
    b, _ = transform(image.decode(), random.Random(3))
    assert torch.equal(a, b)


def test_the_fast_idct_changes_pixels_the_reduced_decode_keeps():
    image = jpeg_image(640, 480)  # a crop too small to reduce: the full-size IDCT decides
    reduced = TrainTransform(400, (0.9, 1.0), (1.0, 1.0), hflip=False, lighting=0.0, decode="reduced")
    fast = TrainTransform(400, (0.9, 1.0), (1.0, 1.0), hflip=False, lighting=0.0, decode="fast")
    a, b = reduced(image, random.Random(0))[0], fast(image, random.Random(0))[0]
    assert not torch.equal(a, b) and (a.int() - b.int()).abs().float().mean() < 4


def torchvision_box(width: int, height: int, scale, ratio) -> tuple[int, int, int, int]:
    top, left, h, w = T.RandomResizedCrop.get_params(torch.empty(3, height, width), list(scale), list(ratio))
    return left, top, w, h


@pytest.mark.parametrize("width, height, scale, ratio", [
    (100, 50, 0.8, 2.5),  # as wide as the image
    (50, 100, 0.8, 0.4),  # as tall as the image
    (10, 10, 0.04, 0.25),  # 1 px wide
    (10, 10, 0.04, 4.0),  # 1 px tall
    (10, 10, 0.01, 0.16),  # rounds to 0 px wide: never drawn, the fallback instead
    (10, 10, 0.01, 6.25),  # rounds to 0 px tall
])
def test_a_crop_of_a_fixed_area_and_shape_has_torchvisions_size_and_is_placed_at_random_as_its_is(
        width, height, scale, ratio):
    torch.manual_seed(0)
    ours = [random_resized_crop_box(width, height, (scale, scale), (ratio, ratio), random.Random(seed))
            for seed in range(30)]
    theirs = [torchvision_box(width, height, (scale, scale), (ratio, ratio)) for _ in range(30)]
    assert {box[2:] for box in ours} == {box[2:] for box in theirs} and len({box[2:] for box in ours}) == 1
    # A box that fits is placed anywhere, the fallback always in the centre.
    assert (len({box[:2] for box in ours}) > 1) == (len({box[:2] for box in theirs}) > 1)


@pytest.mark.parametrize("width, height, scale, ratio", [
    (100, 1000, (0.9, 1.0), (3 / 4, 4 / 3)),  # very tall: the widest box within the ratios, centred
    (1000, 100, (0.9, 1.0), (3 / 4, 4 / 3)),  # very wide
    (100, 100, (1.0, 1.0), (0.5, 2.0)),  # square with every drawn aspect too long one way: the whole image
])
def test_the_fallback_crop_of_an_image_no_drawn_box_fits_matches_torchvision(width, height, scale, ratio):
    torch.manual_seed(0)
    for seed in range(5):  # on the square image a try rarely fits by rounding: the fallback is the same box
        box = random_resized_crop_box(width, height, scale, ratio, random.Random(seed))
        assert box == torchvision_box(width, height, scale, ratio)


def test_the_fallback_comes_after_ten_tries_as_torchvisions():
    # The tries use up the sample's generator: the flip and lighting draws that follow depend on their count.
    rng, expected = random.Random(0), random.Random(0)
    random_resized_crop_box(100, 1000, (0.9, 1.0), (3 / 4, 4 / 3), rng)
    for _ in range(10):
        expected.uniform(0.9, 1.0), expected.uniform(math.log(3 / 4), math.log(4 / 3))
    assert rng.getstate() == expected.getstate()


def test_a_narrow_crop_is_decoded_at_least_the_output_size_across(monkeypatch):
    from fishnet_train.data import transforms
    resized, real = [], transforms.resize

    def recording_resize(image, height, width):
        resized.append(tuple(image.shape))
        return real(image, height, width)

    monkeypatch.setattr(transforms, "resize", recording_resize)
    # The whole-height 240 x 480 box of a 640 x 480 image: reduced by 2 (not by 4, as its height alone allows).
    TrainTransform(64, (1.0, 1.0), (0.5, 0.5), hflip=False, lighting=0.0, decode="reduced")(
        jpeg_image(640, 480), random.Random(0))
    assert resized == [(3, 240, 120)]


@pytest.mark.parametrize("region", [False, True])
def test_region_decoding_asks_for_the_crops_rectangle_only_when_on(region, monkeypatch):
    from fishnet_train.data.decoding import images
    asked = []

    def refusing_decode_box(data, box, reduction, fast):
        asked.append(box)
        raise ValueError("refused: the whole image decodes instead")  # the same pixels, wherever the binding is

    monkeypatch.setattr(images, "region_decoding_available", lambda: True)
    monkeypatch.setattr(images, "decode_box", refusing_decode_box)
    transform = TrainTransform(32, (0.08, 1.0), (3 / 4, 4 / 3), hflip=False, lighting=0.0, region=region)
    transform(jpeg_image(300, 200), random.Random(4))
    box = random_resized_crop_box(300, 200, (0.08, 1.0), (3 / 4, 4 / 3), random.Random(4))
    assert asked == ([box] if region else [])


class FixedDraws(random.Random):
    """A generator whose random() always returns ``value`` (integers still come from the twister)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_the_flip_is_drawn_as_torchvisions_rand_below_one_half():
    img = pil_to_tensor(photo(32, 32))
    tf = TrainTransform(32, (1.0, 1.0), (1.0, 1.0), hflip=True, lighting=0.0)
    plain = img.permute(1, 2, 0)
    assert torch.equal(tf(img, FixedDraws(0.5 - 2 ** -53))[0], plain.flip(1))
    assert torch.equal(tf(img, FixedDraws(0.5))[0], plain)


@pytest.mark.parametrize("lighting", [0.0, 0.1])
def test_the_lighting_alpha_has_one_draw_per_pca_component_and_none_when_off(lighting):
    img = pil_to_tensor(photo(64, 48))
    rng, expected = random.Random(2), random.Random(2)
    _, alpha = TrainTransform(32, (0.5, 1.0), (3 / 4, 4 / 3), hflip=True, lighting=lighting)(img, rng)
    assert alpha.shape == (3,)
    # Off, the generator is left where the flip left it: the policy's seed drawn next is the same either way.
    random_resized_crop_box(64, 48, (0.5, 1.0), (3 / 4, 4 / 3), expected)
    expected.random()
    for _ in range(3 if lighting else 0):
        expected.gauss(0.0, lighting)
    assert rng.getstate() == expected.getstate()
