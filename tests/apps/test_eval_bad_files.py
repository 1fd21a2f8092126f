"""An undecodable val file under data.bad_images=skip: left out of every figure, never replaced."""
import csv
import json

import torch

from fishnet_train.models import create_model
from fishnet_train.models.weights import WEIGHTS_FORMAT

from ..conftest import write_image_folder
from ..helpers import eval_in_process


def test_an_undecodable_val_file_is_counted_nowhere_and_no_neighbour_twice(tmp_path):
    data = write_image_folder(tmp_path / "data", ext="jpg")  # 3 classes, 3 val images each
    broken = data / "val" / "class_1" / "aa_broken.jpg"  # sorts first: a replacement would be img_0 again
    broken.write_bytes(b"\xff\xd8 not a whole jpeg")
    ckpt = tmp_path / "w.pt"
    torch.manual_seed(0)
    torch.save({"format": WEIGHTS_FORMAT, "data": {"val_resize": 36, "val_crop": 32}, "arch": "fishnet99",
                "classes": ["class_0", "class_1", "class_2"],
                "model": create_model("fishnet99", num_classes=3).state_dict()}, ckpt)
    # Two loader workers and batches of 4, so the blank item travels through collation with the others.
    result = eval_in_process(ckpt, data, tmp_path / "eval", "data.workers=2", "data.batch_size=4",
                             f"eval.predictions={tmp_path / 'p.csv'}")
    assert result.images == 9 and result.class_total == [3, 3, 3] and len(result.skipped) == 1
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [r["path"] for r in rows] == [str(p) for p in sorted((data / "val").rglob("img_*.jpg"))]
    assert [int(r["target"]) for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    summary = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert summary["images"] == 9 and summary["skipped_images"] == 1
    per_class = list(csv.DictReader((tmp_path / "eval" / "per_class.csv").open()))
    assert [int(r["images"]) for r in per_class] == [3, 3, 3]
