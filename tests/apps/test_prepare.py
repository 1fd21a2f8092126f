"""``fishnet-prepare``: ImageNet as downloaded (official tars or Kaggle folders) into shards or folders that
the trainer reads, streamed, deterministic, resumable, and refusing archives that are not a download."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from fishnet_train.apps.prepare import prepare
from fishnet_train.cli.prepare import main
from fishnet_train.data import find_split
from fishnet_train.data.index import load_arrays
from fishnet_train.data.shards import read_shard_splits, write_shards
from fishnet_train.errors import UserError

from ..helpers import run_cli
from .imagenet_archives import WNIDS, make_download, write_image_folder, write_kaggle, write_official

ROOT = Path(__file__).resolve().parents[2]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def download():
    return make_download(big=14)  # ~5 MB of train images: several 1 MiB shards


@pytest.fixture(scope="module")
def sources(download, tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return write_official(root / "official", download), write_kaggle(root / "kaggle", download)


@pytest.fixture(scope="module")
def reference(sources, tmp_path_factory):
    """The official download prepared by one process, uninterrupted."""
    dst = tmp_path_factory.mktemp("reference") / "shards"
    assert prepare(str(sources[0]), str(dst), workers=1, shard_mb=1, subset=True, out=quiet).worker_rss_mb == 0
    return dst


def run_main(monkeypatch, capsys, *args):
    """The CLI in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["fishnet-prepare", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_official_download_makes_shards_holding_every_file_byte_for_byte(download, reference):
    train, val = read_shard_splits(str(reference))
    assert train.classes == WNIDS and len(train.shard_files) > 3
    for split, name in ((train, "train"), (val, "val")):
        expected = download.expected(name)
        assert list(split.samples) == [(n, t) for n, t, _ in expected]
        assert [split.read(i) for i in range(len(split))] == [b for _, _, b in expected]


def test_val_labels_come_from_the_devkit_ids_not_the_sorted_wnid_order(download, reference):
    _, val = read_shard_splits(str(reference))
    labels = {name.split("/")[1]: WNIDS[target] for name, target in val.samples}
    assert labels == {name: wnid for name, (wnid, _) in download.val.items()}
    assert all(re.fullmatch(r"n\d{8}/ILSVRC2012_val_\d{8}\.JPEG", name) for name, _ in val.samples)  # kept


def test_kaggle_download_makes_the_same_shards(sources, reference, tmp_path):
    prepare(str(sources[1]), str(tmp_path / "shards"), workers=1, shard_mb=1, subset=True, out=quiet)
    assert tree(tmp_path / "shards") == tree(reference)


def test_shards_equal_make_shards_of_the_same_image_folder(download, reference, tmp_path):
    folder = write_image_folder(tmp_path / "folder", download)
    write_shards(str(folder), str(tmp_path / "packed"), 1, lambda *a: None)
    packed = tree(tmp_path / "packed")
    assert {k: v for k, v in tree(reference).items() if k.endswith(".tar")} == \
        {k: v for k, v in packed.items() if k.endswith(".tar")}
    for name in ("train", "val"):
        ours, theirs = (load_arrays(str(root / f"{name}-index.npz")) for root in (reference, tmp_path / "packed"))
        assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_two_workers_write_the_same_bytes_as_one(sources, reference, tmp_path):
    summary = prepare(str(sources[0]), str(tmp_path / "shards"), workers=2, shard_mb=1, subset=True, out=quiet)
    assert summary.worker_rss_mb > 0  # written by worker processes (the reference: by this one, none forked)
    assert tree(tmp_path / "shards") == tree(reference)


def test_folder_format_writes_the_image_folder_and_resumes(download, sources, tmp_path):
    dst = tmp_path / "folder"
    prepare(str(sources[0]), str(dst), fmt="folder", workers=2, subset=True, out=quiet)
    expected = tree(write_image_folder(tmp_path / "expected", download))
    assert tree(dst) == expected
    assert list(find_split(str(dst), "val").samples) == [(n, t) for n, t, _ in download.expected("val")]
    (dst / "train" / WNIDS[1] / f"{WNIDS[1]}_9.JPEG").unlink()
    (dst / "train" / WNIDS[0] / f"{WNIDS[0]}_9.JPEG.tmp123").write_bytes(b"half a file")
    summary = prepare(str(sources[1]), str(dst), fmt="folder", workers=1, subset=True, out=quiet)
    assert (summary.files, summary.done_before) == (1, len(expected) - 1) and tree(dst) == expected


def test_other_counts_than_imagenet_need_subset(download, sources, tmp_path):
    counts = f"{len(download.expected('train'))} train and {len(download.val)} val images of 3 classes"
    with pytest.raises(UserError, match=counts + r" where ImageNet-1k has 1,281,167, 50,000 and 1,000.*--subset"):
        prepare(str(sources[0]), str(tmp_path / "dst"), workers=1, out=quiet)
    assert not list((tmp_path / "dst").iterdir())
    lines: list[str] = []
    prepare(str(sources[0]), str(tmp_path / "dst"), workers=1, subset=True, out=lines.append)
    assert len(lines) == 1 and "--subset" in lines[0] and counts in lines[0]


def crafted(kind: str, tmp_path: Path) -> tarfile.TarInfo:
    names = {"dotdot": "../evil.JPEG", "absolute": str(tmp_path / "abs.JPEG"), "backslash": "..\\evil.JPEG",
             "nested": "sub/evil.JPEG"}
    info = tarfile.TarInfo(names.get(kind, f"{kind}.JPEG"))
    if kind in names:
        info.size = 3
    else:
        info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "device": tarfile.CHRTYPE,
                     "fifo": tarfile.FIFOTYPE}[kind]
        info.linkname = "/etc/passwd" if kind == "symlink" else f"{WNIDS[0]}_9.JPEG"
        info.devmajor, info.devminor = 1, 3
    return info


REASONS = {"dotdot": "'..' component", "absolute": "an absolute name", "symlink": "a link", "hardlink": "a link",
           "device": "a device, fifo", "fifo": "a device, fifo", "backslash": "NUL or backslash",
           "nested": "in a sub-folder"}


@pytest.mark.parametrize("kind, where", [
    ("dotdot", "inner"), ("absolute", "inner"), ("symlink", "inner"), ("hardlink", "inner"), ("device", "inner"),
    ("fifo", "inner"), ("backslash", "inner"), ("nested", "inner"), ("dotdot", "val"), ("symlink", "val"),
    ("absolute", "outer"),
])
def test_crafted_archive_members_are_refused_and_nothing_is_written(kind, where, tmp_path, monkeypatch, capsys):
    member = crafted(kind, tmp_path)
    src = write_official(tmp_path / "src", make_download(), crafted=(where, member))
    code, out, err = run_main(monkeypatch, capsys, src, tmp_path / "out" / "dst", "--subset", "--workers", "1")
    archive = "ILSVRC2012_img_val.tar" if where == "val" else "ILSVRC2012_img_train.tar"
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: refusing member")
    assert repr(member.name) in err and archive in err and (where != "inner" or f"{WNIDS[0]}.tar" in err)
    assert REASONS[kind] in err
    assert os.listdir(tmp_path / "out") == ["dst"] and tree(tmp_path / "out") == {}
    assert sorted(os.listdir(tmp_path)) == ["out", "src"] and not (tmp_path / "abs.JPEG").exists()


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def test_bad_inputs_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    small = make_download(train_per_class=2, val_per_class=1)
    official = write_official(tmp_path / "official", small)
    (tmp_path / "a-file").write_text("")
    cases = [  # (source, destination, fragments of the line)
        (tmp_path / "nope", tmp_path / "d", [str(tmp_path / "nope"), "not a directory"]),
        (tmp_path / "a-dir", tmp_path / "d", ["neither", "ILSVRC2012_img_train.tar", "ILSVRC/Data/CLS-LOC/train"]),
        (official, tmp_path / "a-file" / "d", ["cannot write into", "a-file"]),
    ]
    (tmp_path / "a-dir").mkdir()
    for check in cases:
        code, _, err = run_main(monkeypatch, capsys, check[0], check[1], "--subset", "--workers", "1")
        assert code == 2 and err.count("\n") == 1 and all(f in err for f in check[2]), err


@pytest.mark.parametrize("damage, fragments", [
    ("truncate-train", ["ILSVRC2012_img_train.tar", "truncated"]),
    ("truncate-val", ["ILSVRC2012_img_val.tar", "truncated"]),
    ("no-devkit", ["ILSVRC2012_devkit_t12.tar.gz not found"]),
    ("garbage-devkit", ["cannot read", "ILSVRC2012_devkit_t12.tar.gz"]),
    ("non-leaf-truth", ["line 2 of data/ILSVRC2012_validation_ground_truth.txt is '4'", "leaf synset"]),
    ("no-csv", ["LOC_val_solution.csv not found"]),
    ("unknown-wnid", ["ILSVRC2012_val_00000001.JPEG is labelled n09999999", "not one of the 3 train classes"]),
    ("no-mapping", ["LOC_synset_mapping.txt not found"]),
    ("empty-class", ["ILSVRC2012_img_train.tar: no image of the class n01443537"]),
    ("not-a-class", ["ILSVRC2012_img_train.tar holds '.tar'", "one <wnid>.tar per class"]),
    ("twice", ["ILSVRC2012_img_train.tar member n01440764.tar holds 'n01440764_9.JPEG' twice"]),
])
def test_damaged_downloads_are_one_line_and_exit_2(damage, fragments, tmp_path, monkeypatch, capsys):
    small = make_download(train_per_class=2, val_per_class=1)
    if damage == "empty-class":
        small.train[WNIDS[1]] = {}
    if damage in ("no-csv", "unknown-wnid", "no-mapping"):
        src = write_kaggle(tmp_path / "src", small, csv_labels={"ILSVRC2012_val_00000001.JPEG": "n09999999"}
                           if damage == "unknown-wnid" else None)
        (src / {"no-csv": "LOC_val_solution.csv", "no-mapping": "LOC_synset_mapping.txt"}.get(damage, "x")).unlink(
            missing_ok=True)
    else:
        crafted = {"not-a-class": ("outer", tarfile.TarInfo(".tar")),
                   "twice": ("inner", tarfile.TarInfo(f"{WNIDS[0]}_9.JPEG"))}.get(damage)
        src = write_official(tmp_path / "src", small, ground_truth=[1, 4, 2] if damage == "non-leaf-truth" else None,
                             crafted=crafted)
        devkit = src / "ILSVRC2012_devkit_t12.tar.gz"
        {"truncate-train": lambda: truncate(src / "ILSVRC2012_img_train.tar"),
         "truncate-val": lambda: truncate(src / "ILSVRC2012_img_val.tar"), "no-devkit": devkit.unlink,
         "garbage-devkit": lambda: devkit.write_bytes(b"\x1f\x8b not a gzip")}.get(damage, lambda: None)()
    code, _, err = run_main(monkeypatch, capsys, src, tmp_path / "dst", "--subset", "--workers", "1")
    assert code == 2 and err.count("\n") == 1 and all(f in err for f in fragments), err


@pytest.mark.slow  # the installed console script (in process: test_bad_inputs_are_one_line_and_exit_2)
def test_the_command_prints_one_error_line_without_traceback(tmp_path):
    result = run_cli("fishnet-prepare", str(tmp_path / "nope"), str(tmp_path / "dst"))  # the installed script
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


@pytest.mark.slow  # a slowed-down run, killed, then run again
def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_one(sources, reference, tmp_path):
    dst = tmp_path / "shards"
    args = [str(sources[0]), str(dst), "--subset", "--shard-mb", "1", "--workers", "2"]
    slow = subprocess.Popen([sys.executable, "-m", "tests.apps.slow_prepare", *args], cwd=ROOT,
                            env={**os.environ, "SLOW_READ_S": "0.03"}, stdout=subprocess.DEVNULL)
    first = dst / ".prepare" / "train-000000.npz"  # written after its shard
    deadline = time.monotonic() + 60
    while not first.exists() and slow.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    slow.send_signal(signal.SIGKILL)
    assert slow.wait() == -signal.SIGKILL and first.exists()
    time.sleep(0.2)  # the workers die with it
    assert not (dst / "train-index.npz").exists() and tree(dst) != tree(reference)
    kept = (dst / "train-000000.tar").stat()
    (dst / "train-000003.tar.tmp999").write_bytes(b"a temporary file of a killed worker")
    result = subprocess.run([sys.executable, "-m", "fishnet_train.cli.prepare", *args], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "were done by an earlier run" in result.stdout and "peak RSS" in result.stdout
    assert tree(dst) == tree(reference)
    assert (dst / "train-000000.tar").stat().st_mtime_ns == kept.st_mtime_ns  # kept, not written again
    shutil.rmtree(dst)


@pytest.mark.slow  # a benchmark of two command runs
def test_the_benchmark_reports_speed_and_memory_for_each_worker_count():
    result = subprocess.run([sys.executable, "tools/benchmarks/bench_prepare.py", "--classes", "2", "--per-class", "3",
                             "--val-per-class", "1", "--workers", "1", "2", "--repeats", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("download: 8 files") and len(lines) == 3
    assert all(re.search(r"prepared 8 files .* files/s, .* MB/s; peak RSS \d+ MB", line) for line in lines[1:])
    assert "no worker processes" in lines[1] and "largest worker" in lines[2]


def test_the_summary_line_states_each_figure_from_its_own_measure():
    from fishnet_train.apps.prepare import Summary
    line = Summary(files=8, bytes=3_000_000, done_before=5, seconds=2.0, start_rss_mb=100.4, peak_rss_mb=1250.6,
                   worker_rss_mb=0.0).line()
    assert line == ("prepared 8 files (3.0 MB) in 2.0 s: 4 files/s, 1.5 MB/s; peak RSS 1,251 MB (100 MB before "
                    "preparing), no worker processes; 5 files were done by an earlier run")
    assert "largest worker 321 MB" in Summary(1, 1, 0, 1.0, 1, 1, 321.2).line()
