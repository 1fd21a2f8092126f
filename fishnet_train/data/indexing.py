"""Indexing a run's data once: rank 0 reads or builds the index, every rank gets it."""
from __future__ import annotations

import functools
import os
from typing import Callable, TypeVar

from ..config import DataConfig
from ..errors import UserError
from ..processes.distributed import DistInfo, all_gather_objects, broadcast_object
from ..processes.signals import Preempted, StopCheck, StopRequest, no_stop
from ..reporting import Reporter
from . import (
    Split, find_split, find_splits, read_shard_split, read_shard_splits, scan_undecodable, split_classes, stage_shards,
)
from .shards import require_index

T = TypeVar("T")


def check_data_root(data: DataConfig, names: tuple[str, ...] = ("train", "val")) -> tuple[str, list[str]]:
    """The first split's path and classes, from a listing (folders; shards: none until their index
    is read); one UserError when ``data.root`` does not hold the splits ``names``."""
    if data.format == "shards":
        if not os.path.isdir(data.root):
            raise UserError(f"data.root {data.root} is not a directory; point it at the output of tools/make_shards.py")
        for name in names:
            require_index(data.root, name)
        return os.path.join(data.root, names[0]), []
    path, classes, _ = split_classes(data.root, names[0])
    for name in names[1:]:
        split_classes(data.root, name)
    return path, classes


def val_split(data: DataConfig) -> Split:
    return read_shard_split(data.root, "val") if data.format == "shards" else find_split(data.root, "val")


def on_main(fn: Callable[[], T], is_main: bool) -> T:
    """``fn()`` run on rank 0 only and its result on every rank. When it fails, every rank fails:
    with its UserError, or (any other error) rank 0 with its own and the others with a line
    naming it, instead of waiting in the broadcast until the process group's timeout. When a stop
    signal ends it (``Preempted``), every rank raises ``Preempted``."""
    result, error, failure, stopped = None, None, None, None
    if is_main:
        try:
            result = fn()
        except Preempted as e:
            stopped = str(e)
        except UserError as e:
            error = str(e)
        except Exception as e:
            failure = e
            error = f"rank 0 failed while indexing the data ({type(e).__name__}: {e}); see its log"
    result, error, stopped = broadcast_object((result, error, stopped))
    stop_together([stopped])
    if failure is not None:
        raise failure
    if error is not None:
        raise UserError(error)
    return result


def stop_together(stopped: list[str | None]) -> None:
    """``Preempted`` on every rank when a stop signal ended the work of any (``stopped``: each rank's
    reason, as their last collective gathered them), before training: there is nothing to save."""
    reasons = [reason for reason in stopped if reason is not None]
    if reasons:
        raise Preempted(f"{reasons[0]}, before training started (nothing to save)")


def stop_check(stop: StopRequest | None, doing: str) -> StopCheck:
    return no_stop if stop is None else functools.partial(stop.raise_if_requested, doing)


def cache_path(data: DataConfig, run_dir: str) -> str | None:
    if data.index_cache == "auto":
        return os.path.join(run_dir, "data_index.npz")
    return data.index_cache


def staged_root(data: DataConfig, info: DistInfo, stop: StopRequest | None = None) -> str:
    """With ``data.stage_dir``, the shards copied there by each node's first process (the others
    wait for it; a failed copy fails every rank, a stopped one stops every rank)."""
    if data.stage_dir is None:
        return data.root
    error, stopped = None, None
    if info.local_rank == 0:
        try:
            stage_shards(data.root, data.stage_dir, stop_check(stop, f"staging the shards in {data.stage_dir}"))
        except Preempted as e:
            stopped = str(e)
        except OSError as e:
            error = f"data.stage_dir={data.stage_dir}: copying the shards failed ({e}); free space or choose another"
    outcomes = all_gather_objects((error, stopped))
    stop_together([s for _, s in outcomes])
    errors = [e for e, _ in outcomes if e is not None]
    if errors:
        raise UserError(errors[0])
    return data.stage_dir


def index_data(data: DataConfig, info: DistInfo, run_dir: str, reporter: Reporter,
               stop: StopRequest | None = None) -> tuple[Split, Split]:
    """Both splits, indexed once by rank 0 (from ``data.index_cache`` while the folders are
    unchanged); with ``data.scan``, every rank decodes its share of the files beforehand. A stop
    signal (``stop``) ends each of these within a class folder, a piece of a copied shard or a batch
    of the scan, with ``Preempted`` on every rank."""
    if data.format == "shards":
        root = staged_root(data, info, stop)
        splits = on_main(lambda: read_shard_splits(root), info.is_main)
    else:
        check = stop_check(stop, f"indexing {data.root}")
        splits = on_main(lambda: find_splits(data.root, cache_path(data, run_dir), reporter.info, check), info.is_main)
    if data.scan:
        scan(data, splits, info, reporter, stop)
    train = splits[0]
    if len(train) < data.batch_size:
        raise UserError(f"{train.root} has {len(train)} images, fewer than one batch "
                        f"(data.batch_size={data.batch_size}); lower data.batch_size")
    return splits


def scan(data: DataConfig, splits: tuple[Split, Split], info: DistInfo, reporter: Reporter,
         stop: StopRequest | None = None) -> None:
    """Every rank decodes its share; an unreadable shard on one rank fails every rank, a stop
    signal on one stops every rank."""
    mine: list[str] = []
    error, stopped = None, None
    try:
        mine = scan_undecodable(list(splits), data.workers, info.rank, info.world_size,
                                stop_check(stop, "scanning the data (data.scan=true)"))
    except Preempted as e:
        stopped = str(e)
    except UserError as e:
        error = str(e)
    parts = all_gather_objects((mine, error, stopped))
    stop_together([s for *_, s in parts])
    errors = [e for _, e, _ in parts if e is not None]
    if errors:
        raise UserError(errors[0])
    bad = [reason for part, *_ in parts for reason in part]
    for reason in bad:
        reporter.warning(f"undecodable: {reason}")
    if bad and data.bad_images == "error":
        raise UserError(f"{len(bad)} undecodable files (first: {bad[0]}); remove them or use data.bad_images=skip")
    reporter.info(f"data scan: {len(bad)} undecodable files")
