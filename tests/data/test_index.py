"""The flat sample index: torchvision's samples in torchvision's order, cached while the folders stay."""
import os
import pickle
import time

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import ImageFolder

from fishnet_train.data import SampleIndex, find_split, find_splits
from fishnet_train.data import folders
from fishnet_train.errors import UserError

from ..conftest import write_image_folder


def test_flat_index_holds_torchvisions_samples_in_its_order(tmp_path):
    root = write_image_folder(tmp_path / "data", classes=3, train_per_class=4)
    nested = root / "train" / "class_1" / "sub" / "deeper"
    nested.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(nested / "z.jpg")
    Image.new("RGB", (8, 8)).save(root / "train" / "class_1" / "sub" / "ü ñ.JPEG")  # non-ASCII name
    (root / "train" / "class_2" / "notes.txt").write_text("not an image")
    split = find_split(str(root), "train")
    reference = ImageFolder(str(root / "train"))
    assert split.classes == reference.classes
    assert [(split.path(i), split.target(i)) for i in range(len(split))] == reference.samples
    assert split.paths() == [p for p, _ in reference.samples]


def test_a_file_name_that_is_not_utf8_is_indexed_and_read_back(tmp_path):
    # Linux names are bytes: a Latin-1 name from an old archive must reach the same file, not fail the index.
    root = write_image_folder(tmp_path / "data", classes=2, train_per_class=1)
    folder = bytes(root / "train" / "class_1")
    with open(os.path.join(folder, b"caf\xe9.jpg"), "wb") as f:
        f.write((root / "train" / "class_0" / "img_0.jpg").read_bytes())
    split = find_split(str(root), "train")
    latin = [i for i in range(len(split)) if "caf" in split.path(i)]
    assert len(latin) == 1 and os.fsencode(split.path(latin[0])).endswith(b"caf\xe9.jpg")
    assert split.read(latin[0]) == (root / "train" / "class_0" / "img_0.jpg").read_bytes()
    assert split.target(latin[0]) == 1


def test_an_empty_index_has_no_samples():
    index = SampleIndex.from_pairs(iter([]))
    assert len(index) == 0 and list(index) == [] and index.starts.tolist() == [0]


def test_the_index_is_a_few_flat_arrays_not_python_objects():
    index = SampleIndex.from_pairs([(f"c{i % 7}/img_{i}.jpg", i % 7) for i in range(1000)])
    arrays = index.arrays()
    assert set(arrays) == {"names", "starts", "targets"}
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())
    assert index.name(999) == "c5/img_999.jpg" and index.target(999) == 5 and len(index) == 1000
    assert list(index)[3] == ("c3/img_3.jpg", 3)


def test_a_pickled_split_leaves_its_open_shard_files_behind(tmp_path):
    split = find_split(str(write_image_folder(tmp_path / "data")), "train")
    split._open[0] = 12345  # as if a shard were open in this process
    assert pickle.loads(pickle.dumps(split))._open == {}


def _bump(path):
    """A later modification time, as adding or removing a file gives its folder."""
    later = time.time() + 5
    os.utime(path, (later, later))


def test_the_cached_index_is_read_instead_of_walking_the_folders(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "data")
    cache = str(tmp_path / "index.npz")
    built = find_splits(str(root), cache)
    monkeypatch.setattr(folders, "find_split", lambda *a: pytest.fail("walked the folders again"))
    cached = find_splits(str(root), cache)
    for a, b in zip(built, cached):
        assert (a.root, a.classes, a.paths()) == (b.root, b.classes, b.paths())
        assert np.array_equal(a.samples.targets, b.samples.targets)


def test_a_changed_class_folder_invalidates_the_cache(tmp_path):
    root = write_image_folder(tmp_path / "data")
    cache = str(tmp_path / "index.npz")
    before = find_splits(str(root), cache)[0]
    Image.new("RGB", (40, 40)).save(root / "train" / "class_2" / "new.jpg")
    _bump(root / "train" / "class_2")
    after = find_splits(str(root), cache)[0]
    assert len(after) == len(before) + 1 and str(root / "train" / "class_2" / "new.jpg") in after.paths()


def _rename_class(root):
    for split in ("train", "val"):
        (root / split / "class_2").rename(root / split / "class_9")
        _bump(root / split)


def _remove_file(root):
    (root / "train" / "class_1" / "img_0.jpg").unlink()
    _bump(root / "train" / "class_1")


def _rename_file(root):
    (root / "val" / "class_0" / "img_1.jpg").rename(root / "val" / "class_0" / "img_x.jpg")
    _bump(root / "val" / "class_0")


def _add_class(root):
    for split in ("train", "val"):
        (root / split / "class_3").mkdir()
        Image.new("RGB", (40, 40)).save(root / split / "class_3" / "a.jpg")
        _bump(root / split)


@pytest.mark.parametrize("change", [_rename_class, _remove_file, _rename_file, _add_class])
def test_every_change_to_what_the_index_holds_invalidates_the_cache(tmp_path, change):
    """Each as the folders' modification times show it: what a cached index is checked by."""
    root = write_image_folder(tmp_path / "data")
    cache = str(tmp_path / "index.npz")
    find_splits(str(root), cache)
    change(root)
    cached, fresh = find_splits(str(root), cache), find_splits(str(root))
    for a, b in zip(cached, fresh):
        assert a.classes == b.classes and list(a.samples) == list(b.samples)
    assert cached[0].classes != ["class_0", "class_1", "class_2"] or change in (_remove_file, _rename_file)


def test_an_unreadable_cache_is_rebuilt_not_an_error(tmp_path):
    root = write_image_folder(tmp_path / "data")
    cache = tmp_path / "index.npz"
    cache.write_bytes(b"half a file")
    assert len(find_splits(str(root), str(cache))[0]) == 24
    with np.load(cache) as f:  # rewritten, readable
        assert "fingerprint" in f.files
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_a_truncated_cache_file_is_rebuilt_not_an_error(tmp_path):
    root = write_image_folder(tmp_path / "data")
    cache = tmp_path / "index.npz"
    find_splits(str(root), str(cache))
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # a copy cut short
    assert len(find_splits(str(root), str(cache))[0]) == 24


def test_an_unwritable_cache_is_one_clear_error(tmp_path):
    root = write_image_folder(tmp_path / "data")
    (tmp_path / "a_folder").mkdir()
    with pytest.raises(UserError, match="data.index_cache=.*a_folder: cannot write it.*or null"):
        find_splits(str(root), str(tmp_path / "a_folder"))


def test_a_cache_built_under_another_mount_path_is_used_and_the_run_says_so(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "data")
    cache = str(tmp_path / "index.npz")
    notes: list[str] = []
    find_splits(str(root), cache, notes.append)  # built ahead, e.g. on a login node
    (tmp_path / "mnt").symlink_to(root)  # the same files, mounted elsewhere on the compute nodes
    monkeypatch.setattr(folders, "find_split", lambda *a: pytest.fail("walked the folders again"))
    train, val = find_splits(str(tmp_path / "mnt"), cache, notes.append)
    assert train.root == str(tmp_path / "mnt" / "train") and train.paths()[0].startswith(str(tmp_path / "mnt"))
    assert notes == [f"data index: walked {root} (no current cache at {cache}: written)",
                     f"data index: read from {cache}"]
