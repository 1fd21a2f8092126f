"""The images fishnet-predict is given: a file, a folder (recursively) or a glob."""
import pytest
import torch

from fishnet_train.data.inputs import ImageFiles, collate_decoded, find_images
from fishnet_train.errors import UserError


@pytest.fixture
def images(tmp_path):
    for name in ("a.jpg", "sub/b.PNG", "sub/deeper/c.jpeg", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_a_folder_is_searched_recursively_for_images_only(images):
    assert find_images(str(images)) == [str(images / p) for p in ("a.jpg", "sub/b.PNG", "sub/deeper/c.jpeg")]


def test_a_glob_and_a_single_file(images):
    assert find_images(str(images / "**" / "*.jpeg")) == [str(images / "sub/deeper/c.jpeg")]
    assert find_images(str(images / "notes.txt")) == [str(images / "notes.txt")]  # named explicitly: tried


def test_nothing_to_classify_is_one_clear_error(images):
    with pytest.raises(UserError, match="no such file or folder"):
        find_images(str(images / "missing"))
    with pytest.raises(UserError, match=r"no images found \(looked for .jpg"):
        find_images(str(images / "*.txt"))


def test_undecodable_files_are_reported_not_replaced(images):
    dataset = ImageFiles(find_images(str(images)), transform=lambda x: x)
    batch, indices, failures = collate_decoded([dataset[0], dataset[1]])
    assert batch is None and indices == [] and len(failures) == 2 and str(images / "a.jpg") in failures[0]


def test_a_batch_mixing_good_and_broken_files_keeps_each_image_with_its_index(image_folder, tmp_path):
    good = sorted(str(p) for p in (image_folder / "val" / "class_0").glob("*.jpg"))[:2]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths = [good[0], str(tmp_path / "broken.png"), good[1]]
    dataset = ImageFiles(paths, transform=lambda x: x[:, :32, :32])
    batch, indices, failures = collate_decoded([dataset[i] for i in range(3)])
    assert indices == [0, 2] and batch.shape == (2, 3, 32, 32) and "broken.png" in failures[0]
    assert torch.equal(batch[1], dataset[2][0])
