"""Tar shards made from an ImageFolder: the same samples, the same bytes, readable by standard tools."""
import os
import re
import resource
import subprocess
import sys
import tarfile

import pytest

from fishnet_train.config import DataConfig
from fishnet_train.data import (
    ImageFolderDataset, ValTransform, build_val_loader, find_split, read_shard_split, read_shard_splits,
    scan_undecodable, stage_shards,
)
from fishnet_train.data import index
from fishnet_train.data import shards as shards_module
from fishnet_train.data.index import member_key
from fishnet_train.data.shards import write_shards
from fishnet_train.errors import UserError
from fishnet_train.processes.signals import Preempted

from ..conftest import write_image_folder
from ..helpers import ROOT


@pytest.fixture
def shards(tmp_path):
    src = write_image_folder(tmp_path / "src", classes=3, train_per_class=8, size=48, ext="jpg")
    dst = tmp_path / "shards"
    write_shards(str(src), str(dst), shard_mb=1, progress=lambda *a: None)
    return src, dst


def test_shards_hold_every_file_byte_for_byte_in_the_folders_order(shards):
    src, dst = shards
    for name in ("train", "val"):
        folder, sharded = find_split(str(src), name), read_shard_split(str(dst), name)
        assert sharded.classes == folder.classes and list(sharded.samples) == list(folder.samples)
        assert sharded.path(0) == str(dst / name / "class_0" / "img_0.jpg")  # where it came from, for messages
        assert all(sharded.read(i) == folder.read(i) for i in range(len(folder)))


def test_shard_members_are_webdataset_samples_that_tar_reads(shards):
    src, dst = shards
    split = read_shard_split(str(dst), "train")
    with tarfile.open(split.shard_files[0]) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[:2] == ["class_0/img_0.jpg", "class_0/img_0.cls"]
        assert tar.extractfile(members[1]).read() == b"0"
        assert members[0].offset_data == split.samples.offset[0] and members[0].size == split.samples.size[0]


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_shards_are_cut_near_the_requested_size(tmp_path):
    src = write_image_folder(tmp_path / "src", classes=2, train_per_class=40, size=300, ext="png")
    write_shards(str(src), str(tmp_path / "dst"), shard_mb=1, progress=lambda *a: None)
    split = read_shard_split(str(tmp_path / "dst"), "train")
    sizes = [os.path.getsize(f) for f in split.shard_files]
    assert len(sizes) > 2 and max(sizes) <= (1 << 20) + 300 * 300 * 3 + 4096


def test_member_keys_keep_one_dot_before_the_extension():
    assert member_key("n01/n01_1.JPEG") == "n01/n01_1"
    assert member_key("cls/a.b.c.png") == "cls/a_b_c"


def test_a_folder_without_a_shard_index_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="train-index.npz not found.*make_shards"):
        read_shard_splits(str(tmp_path))


def test_a_missing_shard_is_one_clear_error(shards):
    _, dst = shards
    os.remove(dst / "val-000000.tar")
    with pytest.raises(UserError, match="val-000000.tar is missing"):
        read_shard_split(str(dst), "val")


def test_staging_copies_once_and_reads_from_the_copy(shards, tmp_path):
    _, dst = shards
    stage = tmp_path / "local"
    assert stage_shards(str(dst), str(stage)) == str(stage)
    assert sorted(os.listdir(stage)) == sorted(os.listdir(dst))
    first = {n: os.stat(stage / n).st_ino for n in os.listdir(stage)}
    os.utime(stage / "train-index.npz", ns=(1, 1))  # a stale copy: copied again (a new file)
    stage_shards(str(dst), str(stage))
    again = {n: os.stat(stage / n).st_ino for n in os.listdir(stage)}
    assert [n for n in first if again[n] != first[n]] == ["train-index.npz"]
    split = read_shard_split(str(stage), "train")
    assert all(f.startswith(str(stage)) for f in split.shard_files)
    assert split.read(3) == read_shard_split(str(dst), "train").read(3)


def test_two_jobs_staging_one_folder_at_once_each_finish_with_whole_files(shards, tmp_path, monkeypatch):
    """A second job stages the same files between the first's copy of one and its rename into place."""
    _, dst = shards
    stage = tmp_path / "local"
    rename, interrupted = os.replace, []

    def rename_after_another_job_staged(source, target):
        if not interrupted:
            interrupted.append(target)
            stage_shards(str(dst), str(stage))  # the other job, start to end
        return rename(source, target)

    monkeypatch.setattr(os, "replace", rename_after_another_job_staged)
    stage_shards(str(dst), str(stage))
    assert interrupted and sorted(os.listdir(stage)) == sorted(os.listdir(dst))  # no temporary file left
    for name in os.listdir(dst):
        assert (stage / name).read_bytes() == (dst / name).read_bytes(), name


def test_a_stop_while_staging_leaves_whole_files_only_and_the_next_run_copies_the_rest(shards, tmp_path, monkeypatch):
    _, dst = shards
    stage = tmp_path / "local"
    monkeypatch.setattr(shards_module, "COPY_CHUNK", 1024)  # each shard in several pieces

    def stop_midway_through_the_second_file() -> None:
        names = os.listdir(stage)
        if any(n.endswith(".tmp") for n in names) and len(names) == 2:
            raise Preempted("stopped by SIGTERM while staging the shards")

    with pytest.raises(Preempted):
        stage_shards(str(dst), str(stage), stop_midway_through_the_second_file)
    staged = os.listdir(stage)
    assert staged == ["train-000000.tar"]  # no temporary file, and no index before the shards it points to
    assert (stage / staged[0]).read_bytes() == (dst / staged[0]).read_bytes()
    stage_shards(str(dst), str(stage))
    assert sorted(os.listdir(stage)) == sorted(os.listdir(dst))
    assert all((stage / name).read_bytes() == (dst / name).read_bytes() for name in os.listdir(dst))


@pytest.mark.slow  # over 6 s on 2 cores
def test_a_truncated_jpeg_in_a_shard_is_named_by_its_shard_member_and_the_path_it_was_packed_from(tmp_path):
    src = write_image_folder(tmp_path / "src", classes=2, train_per_class=3, val_per_class=3, size=48, ext="jpg")
    photo = src / "val" / "class_1" / "img_1.jpg"
    packed_from = photo.with_name("img.1.JPEG")  # packed as img_1.jpeg: other dots and the extension's case change
    packed_from.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    photo.unlink()
    dst = tmp_path / "dst"
    tool = subprocess.run([sys.executable, "tools/make_shards.py", str(src), str(dst), "--shard-mb", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert tool.returncode == 0, tool.stderr
    where = f"{dst / 'val-000000.tar'}:class_1/img_1.jpeg (packed from val/class_1/img.1.JPEG)"
    split = read_shard_split(str(dst), "val")
    data = DataConfig(root=str(dst), format="shards", batch_size=4, workers=2, val_resize=32, val_crop=32)
    skipped = [reason for *_, reasons in build_val_loader(split, data, 0, 1, False) for reason in reasons]
    assert len(skipped) == 1 and skipped[0].startswith(f"{where}: "), skipped
    assert scan_undecodable([split], workers=2) == skipped
    with tarfile.open(dst / "val-000000.tar") as tar:  # the name finds the member, for tar -xf
        assert tar.extractfile("class_1/img_1.jpeg").read() == packed_from.read_bytes()
    index = next(i for i in range(len(split)) if split.samples.name(i) == "class_1/img.1.JPEG")
    with pytest.raises(UserError, match=re.escape(f"cannot decode {where}: ")):
        ImageFolderDataset(split, ValTransform(32, 32), train=False, bad_images="error")[index]


def test_open_shards_are_capped_the_least_recently_read_closed_first(shards, monkeypatch):
    _, dst = shards
    monkeypatch.setattr(index, "open_shard_limit", lambda: 2)
    src = write_image_folder(dst.parent / "many", classes=2, train_per_class=40, size=200, ext="png")
    write_shards(str(src), str(dst.parent / "many_shards"), shard_mb=1, progress=lambda *a: None)
    split = read_shard_split(str(dst.parent / "many_shards"), "train")
    assert len(split.shard_files) > 2
    reference = find_split(str(src), "train")
    first = {int(split.samples.shard[i]): i for i in reversed(range(len(split)))}  # a sample of each shard
    descriptors = len(os.listdir("/proc/self/fd"))
    for shard in (0, 1, 0, 2):
        assert split.read(first[shard]) == reference.read(first[shard])
    assert list(split._open) == [0, 2]  # shard 1, the least recently read, was closed for shard 2
    assert len(os.listdir("/proc/self/fd")) == descriptors + 2
    for i in list(range(len(split))) + list(range(len(split)))[::-1]:
        assert split.read(i) == reference.read(i)
        assert len(split._open) <= 2


def test_a_truncated_or_vanished_shard_is_a_user_error_not_a_skipped_image(shards):
    _, dst = shards
    split = read_shard_split(str(dst), "train")
    with open(split.shard_files[0], "r+b") as f:
        f.truncate(int(split.samples.offset[3]))
    with pytest.raises(UserError, match=r"shorter than its index says: a truncated copy\? copy the shards again$"):
        ImageFolderDataset(split, ValTransform(32, 32), train=False)[5]
    val = read_shard_split(str(dst), "val")
    os.remove(val.shard_files[0])
    with pytest.raises(UserError, match="cannot read .*val-000000.tar"):
        ImageFolderDataset(val, ValTransform(32, 32), train=False)[0]


def test_packing_again_replaces_the_old_shards_and_index(shards):
    src, dst = shards
    (dst / "train-000099.tar").write_bytes(b"left from an older packing")
    write_shards(str(src), str(dst), shard_mb=64, progress=lambda *a: None)
    assert sorted(n for n in os.listdir(dst) if n.startswith("train")) == ["train-000000.tar", "train-index.npz"]


def test_an_interrupted_packing_leaves_no_index_pointing_at_new_bytes(shards):
    src, dst = shards

    def interrupt(split, done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(str(src), str(dst), shard_mb=64, progress=interrupt)
    assert not os.path.exists(dst / "train-index.npz")
    with pytest.raises(UserError, match="train-index.npz not found"):
        read_shard_splits(str(dst))


def test_a_sample_is_located_by_its_shard_member_and_a_renamed_one_by_the_path_it_was_packed_from(tmp_path):
    src = write_image_folder(tmp_path / "src", classes=2, train_per_class=2, val_per_class=1, size=32)
    (src / "train" / "class_1" / "img_1.jpg").rename(src / "train" / "class_1" / "img.1.JPEG")
    write_shards(str(src), str(tmp_path / "dst"), shard_mb=1, progress=lambda *a: None)
    split = read_shard_split(str(tmp_path / "dst"), "train")
    shard = tmp_path / "dst" / "train-000000.tar"
    where = {split.samples.name(i): split.location(i) for i in range(len(split))}
    assert where["class_0/img_0.jpg"] == f"{shard}:class_0/img_0.jpg"
    assert where["class_1/img.1.JPEG"] == f"{shard}:class_1/img_1.jpeg (packed from train/class_1/img.1.JPEG)"
    folder = find_split(str(src), "train")
    assert [folder.location(i) for i in range(len(folder))] == folder.paths()


def test_reading_a_shard_again_reuses_its_open_file(shards):
    split = read_shard_split(str(shards[1]), "train")
    split.read(0)
    fd = split._open[int(split.samples.shard[0])]
    split.read(1)
    assert split._open == {int(split.samples.shard[1]): fd} and split.samples.shard[1] == split.samples.shard[0]


@pytest.mark.parametrize("soft, cap", [(1024, 256), (40, 16), (resource.RLIM_INFINITY, 16384)])
def test_a_split_keeps_a_quarter_of_the_descriptor_limit_open_and_at_least_16(monkeypatch, soft, cap):
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (soft, resource.RLIM_INFINITY))
    assert index.open_shard_limit() == cap
