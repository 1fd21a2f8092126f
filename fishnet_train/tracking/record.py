"""``tracking.json`` in the run directory: each tracker's run id and the last step of each series it has
received. Written when a tracked run starts and as points arrive, so a run killed before its first
checkpoint still goes on with its tracked run; the checkpoint keeps a copy (``tracking``)."""
from __future__ import annotations

import json
import os
from typing import Any

RECORD = "tracking.json"


def read_record(run_dir: str) -> dict[str, Any]:
    """The record, or {} where there is none (or a torn one: the tracked runs start anew)."""
    try:
        with open(os.path.join(run_dir, RECORD)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_record(run_dir: str, record: dict[str, Any]) -> None:
    """Replace the record at once: a reader sees the old one or the new one."""
    path = os.path.join(run_dir, RECORD)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def runs_to_continue(from_dir: dict[str, Any], from_checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """Each tracker's entry to go on with: the run directory's where it names the checkpoint's run (its step
    marks are newer), else the checkpoint's (a resume from another directory), else the directory's (a run
    killed before its first checkpoint)."""
    chosen = dict(from_dir)
    for name, entry in (from_checkpoint or {}).items():
        here = from_dir.get(name)
        if not isinstance(here, dict) or here.get("run_id") != entry.get("run_id"):
            chosen[name] = entry
    return {name: entry for name, entry in chosen.items() if isinstance(entry, dict) and entry.get("run_id")}
