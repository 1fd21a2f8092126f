"""Data indexed once per run: rank 0 indexes, every rank gets the same samples; shards train as the folder."""
import dataclasses
import datetime
import os
import random
import signal

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fishnet_train.config import DataConfig
from fishnet_train.data import datasets, find_split, folders, scan_undecodable
from fishnet_train.data.indexing import index_data, on_main, staged_root
from fishnet_train.data.shards import write_shards
from fishnet_train.errors import UserError
from fishnet_train.processes.distributed import DistInfo
from fishnet_train.processes.signals import Preempted, StopRequest
from fishnet_train.reporting import Reporter
from fishnet_train.training.trainer import train

from ..conftest import write_image_folder
from ..helpers import Crash, assert_same_tensors, crash_at, metrics, saved_state, tiny_options


def _index_on_two_ranks(rank: int, root: str, cache: str, port: int, out: str) -> None:
    from fishnet_train.data import folders
    if rank == 1:  # only rank 0 may walk the folders
        folders.find_split = lambda *a: (_ for _ in ()).throw(AssertionError("rank 1 walked the folders"))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        data = DataConfig(root=root, batch_size=4, workers=0, index_cache=cache)
        info = DistInfo(rank, 2, rank, torch.device("cpu"))
        train, val = index_data(data, info, os.path.dirname(cache), Reporter(os.path.dirname(cache), rank == 0))
        os.makedirs(os.path.join(root, "val", "class_9"), exist_ok=True)  # empty: rank 0 fails, both ranks raise
        try:
            index_data(dataclasses.replace(data, index_cache=None), info, "", Reporter("", False))
            error = None
        except UserError as e:
            error = str(e)
        failures = []
        try:
            on_main(lambda: 1 / 0, rank == 0)  # not a UserError: rank 0 raises it, the others a line naming it
        except (ZeroDivisionError, UserError) as e:
            failures.append(f"{type(e).__name__}: {e}")
        stage = DataConfig(root=root, format="shards", stage_dir=os.path.join(root, "train", "class_0", "img_0.jpg"))
        try:  # a copy failing on the node's first process fails every rank
            staged_root(stage, info)
        except UserError as e:
            failures.append(str(e))
        torch.save({"train": train.paths(), "val": val.paths(), "targets": train.samples.targets.tolist(),
                    "error": error, "failures": failures}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_rank_0_indexes_once_and_every_rank_gets_its_samples(tmp_path):
    root = write_image_folder(tmp_path / "data", classes=3, train_per_class=5)
    cache, out = str(tmp_path / "run" / "data_index.npz"), str(tmp_path / "samples")
    port = 29000 + random.Random(os.getpid()).randint(0, 900)
    mp.start_processes(_index_on_two_ranks, args=(str(root), cache, port, out), nprocs=2, start_method="fork")
    a, b = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    (error_0, stage_0), (error_1, stage_1) = a.pop("failures"), b.pop("failures")
    assert error_0.startswith("ZeroDivisionError")
    assert error_1.startswith("UserError: rank 0 failed while indexing the data (ZeroDivisionError")
    assert stage_0 == stage_1 and "copying the shards failed" in stage_0
    assert a == b and len(a["train"]) == 15 and os.path.isfile(cache)
    assert "found no valid file for the classes class_9" in a["error"]


def test_the_scan_splits_the_files_across_ranks_and_gathers_them_in_order(tmp_path):
    root = tmp_path / "data"
    write_image_folder(root, classes=2, train_per_class=5)
    for name in ("train/class_0/img_1.jpg", "train/class_1/img_4.jpg", "val/class_1/img_0.jpg"):
        (root / name).write_bytes(b"broken")
    splits = [find_split(str(root), "train"), find_split(str(root), "val")]
    whole = scan_undecodable(splits, workers=0)
    parts = [scan_undecodable(splits, 0, part, 3) for part in range(3)]
    assert len(whole) == 3 and [r for p in parts for r in p] == whole
    assert all(len(p) <= 2 for p in parts)  # each part scanned only its own share


OVERRIDES = ("data.crop_scale=[0.08,1.0]", "trainer.checkpoint_every_steps=1", "data.train_decode=fast")


@pytest.mark.slow  # 15-30 s: two runs, one with loader workers
def test_training_on_shards_equals_training_on_their_folder(jpeg_data_and_shards, tmp_path):
    folder, shards = jpeg_data_and_shards
    train(tiny_options(folder, *OVERRIDES), str(tmp_path / "folder"))
    train(tiny_options(shards, *OVERRIDES, "data.format=shards", "data.workers=2"), str(tmp_path / "shards"))
    assert_same_tensors(saved_state(tmp_path / "folder")["model"], saved_state(tmp_path / "shards")["model"])
    assert [m["top1"] for m in metrics(tmp_path / "folder")] == [m["top1"] for m in metrics(tmp_path / "shards")]
    assert os.path.isfile(tmp_path / "folder" / "data_index.npz")  # data.index_cache=auto


@pytest.mark.slow  # 15 s: three runs
def test_a_crash_on_staged_shards_resumes_bit_identical(jpeg_data_and_shards, tmp_path):
    _, shards = jpeg_data_and_shards
    options = tiny_options(shards, *OVERRIDES, "data.format=shards", f"data.stage_dir={tmp_path / 'local'}")
    train(options, str(tmp_path / "reference"))
    with pytest.raises(Crash):
        train(options, str(tmp_path / "crashed"), after_step=crash_at(6))
    train(options, str(tmp_path / "crashed"))
    assert_same_tensors(saved_state(tmp_path / "reference")["model"], saved_state(tmp_path / "crashed")["model"])
    assert sorted(os.listdir(tmp_path / "local")) == sorted(os.listdir(shards))


def test_an_unreadable_shard_met_by_the_scan_is_one_clear_error(jpeg_data_and_shards, tmp_path):
    import shutil
    _, shards = jpeg_data_and_shards
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    with open(copy / "val-000000.tar", "r+b") as f:
        f.truncate(2048)
    data = DataConfig(root=str(copy), format="shards", batch_size=4, workers=0, scan=True)
    with pytest.raises(UserError, match="val-000000.tar is shorter than its index says"):
        index_data(data, DistInfo(0, 1, 0, torch.device("cpu")), str(tmp_path), Reporter(str(tmp_path), True))


@pytest.fixture
def stop_request():
    """A StopRequest installed in this process, as the trainer installs it."""
    stop = StopRequest().install()
    yield stop
    stop.uninstall()


def test_a_stop_signal_while_the_folders_are_walked_stops_before_the_index_cache_is_written(
        tmp_path, monkeypatch, stop_request):
    root = write_image_folder(tmp_path / "data", classes=3, train_per_class=2, val_per_class=1)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    walk = folders._class_files

    def walk_then_signal(path, class_name):
        if class_name == "class_1":
            os.kill(os.getpid(), signal.SIGTERM)  # arrives midway through the walk of train/
        return walk(path, class_name)

    monkeypatch.setattr(folders, "_class_files", walk_then_signal)
    with pytest.raises(Preempted, match="stopped by SIGTERM while indexing .*data, before training started"):
        index_data(DataConfig(root=str(root), batch_size=4, workers=0), DistInfo(), str(run_dir),
                   Reporter(str(run_dir), True), stop_request)
    assert os.listdir(run_dir) == []  # no data_index.npz, whole or partial


def test_a_stop_signal_during_the_scan_stops_it_with_loader_workers(tmp_path, monkeypatch, stop_request):
    root = write_image_folder(tmp_path / "data", classes=3, train_per_class=4, val_per_class=1, ext="jpg")
    decode = datasets._ScanDataset.__getitem__

    def signal_at_the_first_file(self, j):  # in a forked worker: the signal comes from outside the process
        if j == 0:
            os.kill(os.getppid(), signal.SIGTERM)
        return decode(self, j)

    monkeypatch.setattr(datasets._ScanDataset, "__getitem__", signal_at_the_first_file)
    data = DataConfig(root=str(root), batch_size=4, workers=2, index_cache=None, scan=True)
    with pytest.raises(Preempted, match=r"stopped by SIGTERM while scanning the data \(data.scan=true\)"):
        index_data(data, DistInfo(), str(tmp_path), Reporter(str(tmp_path), True), stop_request)


def _stop_on_one_rank(rank: int, root: str, shards: str, port: int, out: str) -> None:
    torch.set_num_threads(1)  # forked: the parent's OpenMP threads are not in this process
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))  # a rank left waiting fails, not hangs
    try:
        info, reporter = DistInfo(rank, 2, rank, torch.device("cpu")), Reporter("", False)

        def stop_on(stopping_rank: int) -> StopRequest:
            stop = StopRequest()
            stop.signum = signal.SIGTERM if rank == stopping_rank else None  # as if the signal reached one rank
            return stop

        folder = DataConfig(root=root, batch_size=4, workers=0, index_cache=None)
        phases = {
            "indexing": lambda: index_data(folder, info, "", reporter, stop_on(0)),
            "staging": lambda: index_data(DataConfig(root=shards, format="shards", stage_dir=f"{shards}-staged",
                                                     batch_size=4, workers=0), info, "", reporter, stop_on(0)),
            "scan": lambda: index_data(dataclasses.replace(folder, scan=True), info, "", reporter, stop_on(1)),
        }
        outcomes = {}
        for phase, run in phases.items():
            try:
                run()
                outcomes[phase] = "went on"
            except Preempted as e:
                outcomes[phase] = str(e)
        outcomes["after"] = len(index_data(folder, info, "", reporter, stop_on(-1))[0])  # the group still works
        torch.save(outcomes, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_a_stop_signal_on_one_rank_before_training_stops_every_rank(tmp_path):
    root = write_image_folder(tmp_path / "data", classes=3, train_per_class=5)
    shards = tmp_path / "shards"
    write_shards(str(root), str(shards), shard_mb=1, progress=lambda *a: None)
    out = str(tmp_path / "outcomes")
    port = 29000 + random.Random(os.getpid() + 2).randint(0, 900)
    mp.start_processes(_stop_on_one_rank, args=(str(root), str(shards), port, out), nprocs=2, start_method="fork")
    a, b = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    assert a == b
    assert a["indexing"].startswith(f"stopped by SIGTERM while indexing {root}, before training started")
    assert a["staging"].startswith(f"stopped by SIGTERM while staging the shards in {shards}-staged")
    assert a["scan"].startswith("stopped by SIGTERM while scanning the data")
    assert a["after"] == 15
