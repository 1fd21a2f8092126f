"""Indexing in one process: the index cache, the one-batch floor, the scan's report and policy, rank 0's
errors as every rank sees them, staging, and the data root's check.

mutmut credits a test only with the functions it reaches in its own process, so the two-rank tests of
test_indexing.py (forked ranks) do not count for it. Where a second rank matters here, its side of the
collective is played by hand: what rank 0 sent, replayed on rank 1."""
import os
import re
import signal

import pytest

from fishnet_train.config import DataConfig
from fishnet_train.data import indexing
from fishnet_train.data.indexing import check_data_root, index_data, on_main, staged_root, val_split
from fishnet_train.errors import UserError
from fishnet_train.processes.distributed import DistInfo
from fishnet_train.processes.signals import Preempted, StopRequest
from fishnet_train.reporting import Reporter

from ..conftest import write_image_folder


def _folder(tmp_path, train_per_class=2, val_per_class=1):
    return str(write_image_folder(tmp_path / "data", classes=2, train_per_class=train_per_class,
                                  val_per_class=val_per_class, size=16))


def _index(data, run_dir, stop=None):
    return index_data(data, DistInfo(), str(run_dir), Reporter(str(run_dir), True), stop)


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
