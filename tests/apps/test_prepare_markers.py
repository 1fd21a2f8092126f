"""``fishnet-prepare --restart-markers``: the plain shards' members, each train JPEG as the rewrite tool writes it,
val as it is; the same bytes whatever the worker count, resumable, and the refusals made before any work."""
from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from fishnet_train.apps import prepare as prepare_module
from fishnet_train.apps.prepare import prepare
from fishnet_train.data.decoding.jpeg_region import has_mcu_restarts, region_decoding_available
from fishnet_train.data.decoding.restart_markers import KEPT, REWRITTEN, region_decoding_notes, rewrite_tree
from fishnet_train.data.index import sample_members
from fishnet_train.data.shards import read_shard_splits
from fishnet_train.errors import UserError

from .imagenet_archives import write_image_folder
from .test_prepare import download, quiet, reference, run_main, sources, tree  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not region_decoding_available(), reason="the region decoder is not built here")


def members(shard: Path) -> dict[str, bytes]:
    with tarfile.open(shard) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def marked(sources, tmp_path_factory):  # noqa: F811
    dst = tmp_path_factory.mktemp("marked") / "shards"
    prepare(str(sources[0]), str(dst), workers=1, shard_mb=1, subset=True, out=quiet, restart_markers=True)
    return dst


def test_marked_shards_hold_the_plain_members_each_train_jpeg_as_the_rewrite_tool_writes_it(
        download, reference, marked, tmp_path):  # noqa: F811
    folder = write_image_folder(tmp_path / "folder", download)
    counts = rewrite_tree(str(folder / "train"), str(tmp_path / "rewritten"), 1)
    assert counts.files[REWRITTEN] > 0 and counts.files[KEPT] == 2  # the CMYK JPEG and the PNG named .JPEG
    rewritten = {sample_members(str(p.relative_to(tmp_path / "rewritten")))[0]: p.read_bytes()
                 for p in (tmp_path / "rewritten").rglob("*") if p.is_file()}
    plain_shards = sorted(p.name for p in reference.glob("train-*.tar"))
    assert sorted(p.name for p in marked.glob("train-*.tar")) == plain_shards and len(plain_shards) > 3
    seen = 0
    for name in plain_shards:
        plain, ours = members(reference / name), members(marked / name)
        assert list(plain) == list(ours)  # the same members, in the same order, in the same shard
        for member, data in ours.items():
            if member.endswith(".cls"):
                assert data == plain[member]
            else:
                assert data == rewritten[member], member
                seen += 1
    assert seen == len(rewritten)


def test_val_is_written_as_it_is_and_the_index_reads_the_marked_bytes(reference, marked):  # noqa: F811
    val = {k: v for k, v in tree(reference).items() if k.startswith(("val-", ".prepare/val-"))}
    assert val and val == {k: v for k, v in tree(marked).items() if k.startswith(("val-", ".prepare/val-"))}
    train, _ = read_shard_splits(str(marked))
    plain, _ = read_shard_splits(str(reference))
    assert list(train.samples) == list(plain.samples)
    marked_count = sum(has_mcu_restarts(train.read(i)) for i in range(len(train)))
    assert marked_count == len(train) - 2 and not any(has_mcu_restarts(plain.read(i)) for i in range(len(plain)))


def test_two_workers_write_the_same_bytes_and_a_rerun_goes_on_from_what_is_there(sources, marked, tmp_path):  # noqa
    dst = tmp_path / "shards"
    prepare(str(sources[0]), str(dst), workers=2, shard_mb=1, subset=True, out=quiet, restart_markers=True)
    assert tree(dst) == tree(marked)
    (dst / "train-000001.tar").unlink()
    (dst / "train-index.npz").unlink()
    kept = (dst / "train-000000.tar").stat().st_mtime_ns
    summary = prepare(str(sources[0]), str(dst), workers=2, shard_mb=1, subset=True, out=quiet, restart_markers=True)
    assert tree(dst) == tree(marked) and summary.done_before > 0
    assert (dst / "train-000000.tar").stat().st_mtime_ns == kept


def test_a_plain_run_and_a_marked_run_into_each_others_output_rewrite_the_train_shards(
        sources, reference, marked, tmp_path):  # noqa: F811
    dst = tmp_path / "shards"
    shutil.copytree(reference, dst)
    val_before = (dst / "val-000000.tar").stat().st_mtime_ns
    prepare(str(sources[0]), str(dst), workers=1, shard_mb=1, subset=True, out=quiet, restart_markers=True)
    assert tree(dst) == tree(marked) and (dst / "val-000000.tar").stat().st_mtime_ns == val_before
    prepare(str(sources[0]), str(dst), workers=1, shard_mb=1, subset=True, out=quiet)
    assert tree(dst) == tree(reference)


def test_markers_for_class_folders_or_without_the_region_decoder_are_refused_before_any_work(
        sources, tmp_path, monkeypatch, capsys):  # noqa: F811
    code, _, err = run_main(monkeypatch, capsys, sources[0], tmp_path / "dst", "--subset", "--format", "folder",
                            "--restart-markers")
    assert code == 2 and err == ("error: --restart-markers writes shards; for class folders, prepare them, then run "
                                 "`python tools/add_restart_markers.py DST/train DST/train`\n")
    monkeypatch.setattr(prepare_module, "region_decoder_notice", lambda: "the region decoder was not built (x)")
    with pytest.raises(UserError, match=r"^--restart-markers needs the region decoder: the region decoder was not"):
        prepare(str(sources[0]), str(tmp_path / "dst"), subset=True, out=quiet, restart_markers=True)
    assert not (tmp_path / "dst").exists()


def test_the_trainers_hint_on_plain_shards_names_the_prepare_option_and_is_silent_on_marked_ones(
        reference, marked):  # noqa: F811
    plain, _ = read_shard_splits(str(reference))
    [note] = region_decoding_notes(True, plain)
    assert "fishnet-prepare <download> <new data.root> --restart-markers" in note
    assert region_decoding_notes(True, read_shard_splits(str(marked))[0]) == []
