"""Data indexed once per run: rank 0 indexes, every rank gets the same samples; shards train as the folder."""
import dataclasses
import datetime
import os
import random
import re
import signal

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fishnet_train.config import DataConfig
from fishnet_train.data import datasets, find_split, folders, indexing, scan_undecodable
from fishnet_train.data.indexing import check_data_root, index_data, on_main, staged_root, val_split
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
        train, val = index_data(data, info, os.path.dirname(cache), Reporter(os.path.dirname(cache), rank == 0, False))
        os.makedirs(os.path.join(root, "val", "class_9"), exist_ok=True)  # empty: rank 0 fails, both ranks raise
        try:
            index_data(dataclasses.replace(data, index_cache=None), info, "", Reporter("", False, False))
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


@pytest.fixture(scope="module")
def jpeg_data_and_shards(tmp_path_factory):
    """JPEGs large enough for reduced decodes at the 32 px crop, and their shards."""
    root = tmp_path_factory.mktemp("jpeg")
    src = write_image_folder(root / "folder", classes=3, train_per_class=8, size=96, ext="jpg")
    write_shards(str(src), str(root / "shards"), shard_mb=1, progress=lambda *a: None)
    return src, root / "shards"


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
        index_data(data, DistInfo(0, 1, 0, torch.device("cpu")), str(tmp_path), Reporter(str(tmp_path), True, False))


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
                   Reporter(str(run_dir), True, False), stop_request)
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
        index_data(data, DistInfo(), str(tmp_path), Reporter(str(tmp_path), True, False), stop_request)


def _stop_on_one_rank(rank: int, root: str, shards: str, port: int, out: str) -> None:
    torch.set_num_threads(1)  # forked: the parent's OpenMP threads are not in this process
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))  # a rank left waiting fails, not hangs
    try:
        info, reporter = DistInfo(rank, 2, rank, torch.device("cpu")), Reporter("", False, False)

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


# Single-process tests below: mutmut credits a test only with the functions it reaches in its own process,
# so the two-rank tests above (forked ranks) do not count for it. Where a second rank matters, its side of the
# collective is played by hand: what rank 0 sent, replayed on rank 1.

def _folder(tmp_path, train_per_class=2, val_per_class=1):
    return str(write_image_folder(tmp_path / "data", classes=2, train_per_class=train_per_class,
                                  val_per_class=val_per_class, size=16))


def _index(data, run_dir, stop=None):
    return index_data(data, DistInfo(), str(run_dir), Reporter(str(run_dir), True, False), stop)


def _stopped() -> StopRequest:
    stop = StopRequest()
    stop.signum = signal.SIGTERM  # as if the signal had come: nothing installed in this process
    return stop


def test_the_auto_index_cache_is_written_in_the_run_dir_and_read_back(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # a cache misplaced in the working directory shows up here, not in the repository
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = DataConfig(root=_folder(tmp_path), batch_size=4, workers=0)
    _index(data, run_dir)
    assert os.listdir(run_dir) == ["data_index.npz"]
    with caplog.at_level("INFO", logger="fishnet_train"):
        _index(data, run_dir)
    assert f"data index: read from {run_dir / 'data_index.npz'}" in caplog.messages


def test_an_index_cache_path_is_used_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir, cache = tmp_path / "run", tmp_path / "index.npz"
    run_dir.mkdir()
    _index(DataConfig(root=_folder(tmp_path), batch_size=4, workers=0, index_cache=str(cache)), run_dir)
    assert os.path.isfile(cache) and os.listdir(run_dir) == []


def test_a_null_index_cache_writes_no_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with caplog.at_level("INFO", logger="fishnet_train"):
        _index(DataConfig(root=_folder(tmp_path), batch_size=4, workers=0, index_cache=None), run_dir)
    assert os.listdir(run_dir) == [] and sorted(os.listdir(tmp_path)) == ["data", "run"]
    assert any(m.endswith("(no cache)") for m in caplog.messages)


def test_a_train_split_of_exactly_one_batch_is_enough(tmp_path):
    # 4 train images, 2 val images: only train has to hold a batch
    train, val = _index(DataConfig(root=_folder(tmp_path), batch_size=4, workers=0, index_cache=None), tmp_path)
    assert (len(train), len(val)) == (4, 2) and train.root.endswith("train")


def test_a_train_split_smaller_than_one_batch_is_refused(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(UserError, match=rf"^{re.escape(root)}/train has 4 images, fewer than one batch "
                                        r"\(data.batch_size=5\); lower data.batch_size$"):
        _index(DataConfig(root=root, batch_size=5, workers=0, index_cache=None), tmp_path)


def _with_undecodable_files(tmp_path) -> str:
    root = _folder(tmp_path, train_per_class=3)
    for name in ("train/class_0/img_1.jpg", "val/class_1/img_0.jpg"):
        (tmp_path / "data" / name).write_bytes(b"broken")
    return root


def test_the_scan_logs_each_undecodable_file_and_skips_them(tmp_path, caplog):
    root = _with_undecodable_files(tmp_path)
    data = DataConfig(root=root, batch_size=4, workers=0, index_cache=None, scan=True)  # data.bad_images=skip
    with caplog.at_level("INFO", logger="fishnet_train"):
        _index(data, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w.split(": ")[:2] for w in warnings] == [["undecodable", f"{root}/train/class_0/img_1.jpg"],
                                                     ["undecodable", f"{root}/val/class_1/img_0.jpg"]]
    assert "data scan: 2 undecodable files" in caplog.messages


def test_with_bad_images_error_the_scan_refuses_undecodable_files_naming_the_first(tmp_path):
    root = _with_undecodable_files(tmp_path)
    data = DataConfig(root=root, batch_size=4, workers=0, index_cache=None, scan=True, bad_images="error")
    first = re.escape(f"{root}/train/class_0/img_1.jpg")
    with pytest.raises(UserError, match=rf"^2 undecodable files \(first: {first}: .*\); "
                                        "remove them or use data.bad_images=skip$"):
        _index(data, tmp_path)


def test_with_bad_images_error_a_clean_scan_goes_on(tmp_path, caplog):
    data = DataConfig(root=_folder(tmp_path), batch_size=4, workers=0, index_cache=None, scan=True, bad_images="error")
    with caplog.at_level("INFO", logger="fishnet_train"):
        _index(data, tmp_path)
    assert "data scan: 0 undecodable files" in caplog.messages


def test_a_user_error_on_rank_0_is_the_error_of_every_rank(monkeypatch):
    sent = []
    monkeypatch.setattr(indexing, "broadcast_object", lambda obj: sent.append(obj) or obj)

    def refuse():
        raise UserError("data.root is wrong")

    with pytest.raises(UserError, match="^data.root is wrong$"):
        on_main(refuse, True)
    monkeypatch.setattr(indexing, "broadcast_object", lambda obj: sent[0])  # rank 1 receives rank 0's
    with pytest.raises(UserError, match="^data.root is wrong$"):
        on_main(lambda: pytest.fail("only rank 0 indexes"), False)


def test_an_unexpected_error_on_rank_0_is_raised_there_and_named_on_the_other_ranks(monkeypatch):
    sent = []
    monkeypatch.setattr(indexing, "broadcast_object", lambda obj: sent.append(obj) or obj)
    with pytest.raises(ZeroDivisionError):  # rank 0's own, with its traceback
        on_main(lambda: 1 / 0, True)
    monkeypatch.setattr(indexing, "broadcast_object", lambda obj: sent[0])
    with pytest.raises(UserError, match=r"^rank 0 failed while indexing the data "
                                        r"\(ZeroDivisionError: division by zero\); see its log$"):
        on_main(lambda: pytest.fail("only rank 0 indexes"), False)


def _shard_config(shards, stage_dir, **kwargs):
    return DataConfig(root=str(shards), format="shards", stage_dir=str(stage_dir), batch_size=4, workers=0, **kwargs)


def test_shards_are_read_from_their_staged_copy(jpeg_data_and_shards, tmp_path):
    _, shards = jpeg_data_and_shards
    train, val = _index(_shard_config(shards, tmp_path / "local"), tmp_path)
    assert sorted(os.listdir(tmp_path / "local")) == sorted(os.listdir(shards))
    assert train.root == str(tmp_path / "local" / "train") and val.shard_files[0].startswith(str(tmp_path / "local"))


def test_only_the_first_process_of_a_node_copies_the_shards(jpeg_data_and_shards, tmp_path):
    _, shards = jpeg_data_and_shards
    second = DistInfo(rank=3, world_size=4, local_rank=1)  # the node's first process copies for it
    assert staged_root(_shard_config(shards, tmp_path / "local"), second) == str(tmp_path / "local")
    assert not os.path.exists(tmp_path / "local")


def test_a_failed_copy_of_the_shards_is_one_error_naming_data_stage_dir(jpeg_data_and_shards, tmp_path):
    _, shards = jpeg_data_and_shards
    (tmp_path / "taken").write_text("a file, not a folder")
    taken = re.escape(str(tmp_path / "taken"))
    with pytest.raises(UserError, match=rf"^data.stage_dir={taken}: copying the shards failed \(.*\); "
                                        "free space or choose another$"):
        staged_root(_shard_config(shards, tmp_path / "taken"), DistInfo())


def test_a_stop_signal_while_staging_the_shards_stops_before_training(jpeg_data_and_shards, tmp_path):
    _, shards = jpeg_data_and_shards
    local = re.escape(str(tmp_path / "local"))
    with pytest.raises(Preempted, match=rf"^stopped by SIGTERM while staging the shards in {local}, "
                                        r"before training started \(nothing to save\)$"):
        _index(_shard_config(shards, tmp_path / "local"), tmp_path, _stopped())


def test_the_data_root_is_checked_for_both_splits_before_indexing(tmp_path):
    root = _folder(tmp_path)
    assert check_data_root(DataConfig(root=root)) == (f"{root}/train", ["class_0", "class_1"])
    assert check_data_root(DataConfig(root=root), ("val",)) == (f"{root}/val", ["class_0", "class_1"])
    os.rename(f"{root}/val", f"{root}/validation")
    with pytest.raises(UserError, match=f"^{re.escape(root)}/val not found: data.root must hold val/"):
        check_data_root(DataConfig(root=root))
    with pytest.raises(UserError, match=f"^data.root {re.escape(str(tmp_path))}/nowhere is not a directory"):
        check_data_root(DataConfig(root=str(tmp_path / "nowhere")))


def test_a_shard_root_is_checked_for_the_index_of_each_split(jpeg_data_and_shards, tmp_path):
    import shutil
    _, shards = jpeg_data_and_shards
    assert check_data_root(DataConfig(root=str(shards), format="shards")) == (f"{shards}/train", [])
    assert check_data_root(DataConfig(root=str(shards), format="shards"), ("val",)) == (f"{shards}/val", [])
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    os.remove(copy / "val-index.npz")  # what an interrupted tools/make_shards.py leaves
    assert check_data_root(DataConfig(root=str(copy), format="shards"), ("train",)) == (f"{copy}/train", [])
    with pytest.raises(UserError, match=f"^{re.escape(str(copy))}/val-index.npz not found: data.format=shards"):
        check_data_root(DataConfig(root=str(copy), format="shards"))
    nowhere = re.escape(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match=f"^data.root {nowhere} is not a directory; "
                                        "point it at the output of tools/make_shards.py$"):
        check_data_root(DataConfig(root=str(tmp_path / "nowhere"), format="shards"))


def test_the_val_split_is_read_from_folders_or_shards(jpeg_data_and_shards):
    folder, shards = jpeg_data_and_shards
    from_folder = val_split(DataConfig(root=str(folder)))
    from_shards = val_split(DataConfig(root=str(shards), format="shards"))
    assert from_folder.root == f"{folder}/val" and from_folder.shard_files == ()
    assert from_shards.root == f"{shards}/val" and from_shards.shard_files
    assert from_shards.samples.targets.tolist() == from_folder.samples.targets.tolist() and len(from_folder) == 9
