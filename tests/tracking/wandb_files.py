"""W&B's offline run files read back: ``run-<id>.wandb`` is a LevelDB-style log of protobuf records (a 7-byte
header, then 32 KiB blocks of chunks, each a 4-byte CRC, a 2-byte length and a 1-byte type). W&B's own
Python reader went with its Go core; this one reads what the tests need."""
from __future__ import annotations

import json
import struct
from pathlib import Path

HEADER = 7  # b":W&B", a 2-byte magic, a 1-byte version
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    out, pos, pending = [], HEADER, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # the block's tail is padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def read_offline_run(folder: Path) -> dict:
    """The run id, the history rows (as dicts), the config and the summary of one offline run folder."""
    (path,) = folder.glob("run-*.wandb")
    run_id, history, config, summary = None, [], {}, {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id = record.run.run_id
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "summary":
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update})
    return {"run_id": run_id, "history": history, "config": config, "summary": summary}
