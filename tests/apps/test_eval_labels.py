"""ImageNet-ReaL labels, class subsets and flip test-time augmentation in fishnet-eval."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import ImageNetInfo

from fishnet_train.apps.eval_labels import read_real_labels, real_label_sets, real_top1, subset_outputs
from fishnet_train.apps.trained_model import load_checkpoint
from fishnet_train.data import SampleIndex, Split
from fishnet_train.data.decoding.images import decode_rgb
from fishnet_train.data.shards import write_split_shards
from fishnet_train.data.transforms import BatchPreprocess, ValTransform
from fishnet_train.errors import UserError
from fishnet_train.inference import fuse_for_inference
from fishnet_train.inference.views import ClassSubset, FlipAverage
from fishnet_train.models import create_model

from ..helpers import eval_in_process

WNIDS = ImageNetInfo().label_names()
SIZES = ("data.val_resize=36", "data.val_crop=32")


def write_jpeg(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (40 + seed % 7, 44, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def imagenet_checkpoint(path: Path, images: list[Path], classes: list[str] | None = None) -> Path:
    """A 1000-class FishNet-99 whose classifier tells ``images`` apart: random weights with the images' common
    feature direction projected out, scaled to logits of unit spread (a plain random classifier gives all
    of them one class, with a softmax of 1.0). ``classes`` None: no class names, as in the released files."""
    torch.manual_seed(0)
    model = create_model("fishnet99", num_classes=1000).eval()
    features = []
    hook = model.classifier.fc.register_forward_hook(lambda module, args, out: features.append(args[0].flatten(1)))
    with torch.no_grad():
        model(protocol_batch(images))
    hook.remove()
    common, spread = features[0].mean(0), features[0] - features[0].mean(0)
    weight = torch.randn(1000, common.numel())
    weight -= (weight @ common)[:, None] * common[None, :] / (common @ common)
    weight /= (spread @ weight.T).std()
    state = model.state_dict()
    state["classifier.fc.weight"].copy_(weight.view_as(state["classifier.fc.weight"]))
    state["classifier.fc.bias"].zero_()
    torch.save({"model": state, "arch": "fishnet99", **({"classes": classes} if classes else {})}, path)
    return path


def protocol_batch(files: list[Path], mirror: bool = False) -> torch.Tensor:
    """``files`` as the evaluation protocol (resize 36, crop 32) feeds them to the model."""
    crops = [ValTransform(36, 32)(decode_rgb(f.read_bytes())) for f in files]
    batch = torch.stack([c.flip(1) if mirror else c for c in crops])
    return BatchPreprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"), False)(batch)


def imagenet_val_shards(tmp_path: Path, files: list[tuple[int, int]]) -> Path:
    """A shard root whose val split has ImageNet's 1000 classes and only ``files``: (val image number, class)."""
    src = tmp_path / "val-files"
    pairs = sorted((f"{WNIDS[c]}/ILSVRC2012_val_{n:08d}.JPEG", c) for n, c in files)
    for i, (name, _) in enumerate(pairs):
        write_jpeg(src / name, i)
    dst = tmp_path / "shards"
    dst.mkdir()
    write_split_shards(Split(str(src), list(WNIDS), SampleIndex.from_pairs(pairs)), str(dst), "val", 1 << 20)
    return dst, [src / name for name, _ in pairs]


def predictions(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def test_real_top1_scores_each_image_by_its_own_file_number_and_leaves_out_empty_sets(tmp_path):
    # File numbers out of the split's order (classes sort before numbers), so matching by position fails.
    data, files = imagenet_val_shards(tmp_path, [(3, 5), (1, 700), (2, 20), (4, 999), (5, 0)])
    ckpt = imagenet_checkpoint(tmp_path / "w.pt", files)
    eval_in_process(ckpt, data, tmp_path / "plain", "data.format=shards", *SIZES,
                    f"eval.predictions={tmp_path / 'p.csv'}")
    rows = predictions(tmp_path / "p.csv")
    number = {int(Path(r["path"]).stem.split("_")[-1]): int(r["pred1"]) for r in rows}
    assert len(set(number.values())) == 5  # else a score matched by position could not differ
    other = {n: (p + 1) % 1000 for n, p in number.items()}
    # Image 1 right (its prediction among two labels), 2 wrong, 3 unlabelled (left out), 4 right, 5 (class 0) right.
    real = [[other[1], number[1]], [other[2]], [], [number[4]], [number[5]]]
    (tmp_path / "real.json").write_text(json.dumps(real))
    eval_in_process(ckpt, data, tmp_path / "real", "data.format=shards", *SIZES,
                    f"eval.real_labels={tmp_path / 'real.json'}")
    summary = json.loads((tmp_path / "real" / "eval.json").read_text())
    assert summary["real_images"] == 4
    assert summary["real_top1"] == pytest.approx(75.0)
    assert summary["images"] == 5 and summary["tta"] == "none"
    assert (summary["set"], summary["set_folder"]) == ("real", str(data / "val"))
    assert json.loads((tmp_path / "plain" / "eval.json").read_text())["set"] == "val"


def test_real_labels_refuse_files_not_named_as_imagenet_val_and_a_short_label_file(tmp_path):
    names = ["n01/ILSVRC2012_val_00000002.JPEG", "n01/other.JPEG"]
    split = Split("/val", list(WNIDS), SampleIndex.from_pairs((n, 0) for n in names))
    with pytest.raises(UserError, match="/val/n01/other.JPEG is not one of its 2 images"):
        real_label_sets([[1], [2]], split, "real.json")
    with pytest.raises(UserError, match="ILSVRC2012_val_00000002.JPEG is not one of its 1 images"):
        real_label_sets([[1]], split, "real.json")
    for classes in (WNIDS[:10], [f"class_{i}" for i in range(1000)], WNIDS[::-1]):
        other = Split("/val", list(classes), SampleIndex.from_pairs([(names[0], 0)]))
        with pytest.raises(UserError, match="needs the val classes to be ImageNet's 1000 wnids"):
            real_label_sets([[1], [2]], other, "real.json")
    assert real_label_sets([[7], [8, 9]], Split("/val", list(WNIDS), SampleIndex.from_pairs([(names[0], 0)])),
                           "r") == [[8, 9]]


@pytest.mark.parametrize("content", ['{"a": 1}', "[[1], [1000]]", "[[1], [-1]]", "[[1.5]]", "[1, 2]", "not json"])
def test_a_real_labels_file_that_is_not_label_lists_is_refused(tmp_path, content):
    (tmp_path / "real.json").write_text(content)
    with pytest.raises(UserError, match="eval.real_labels="):
        read_real_labels(str(tmp_path / "real.json"))


def test_real_top1_counts_hits_among_labelled_images_only():
    assert real_top1([1, 2, 3, 4], [[1, 5], [], [9], [4]]) == (pytest.approx(200 / 3), 3)
    assert real_top1([1], [[]]) == (0.0, 0)
    assert real_top1([0, None], [[0], [1]]) == (100.0, 1)  # a file that did not decode is left out


def reference_logits(ckpt: Path, files: list[Path], mirror: bool = False) -> torch.Tensor:
    """The checkpoint's logits for ``files`` under the evaluation protocol, computed here."""
    loaded = load_checkpoint(str(ckpt), None)
    model = create_model(loaded.arch, num_classes=loaded.num_classes)
    model.load_state_dict(loaded.state)
    with torch.no_grad():
        return fuse_for_inference(model.eval())(protocol_batch(files, mirror))


def test_class_subset_predicts_among_the_subsets_classes_from_the_models_own_outputs(tmp_path):
    chosen = [WNIDS[999], WNIDS[10], WNIDS[500]]  # the file's order is not the folders' (sorted) order
    for k, wnid in enumerate(chosen):
        for i in range(2):
            write_jpeg(tmp_path / "data" / "val" / wnid / f"{i}.JPEG", 10 * k + i)
    (tmp_path / "subset.txt").write_text("# ImageNet-R style\n" + "\n".join(chosen) + "\n\n")
    images = sorted((tmp_path / "data" / "val").rglob("*.JPEG"))
    ckpt = imagenet_checkpoint(tmp_path / "w.pt", images)  # no class names: ImageNet's sorted wnids
    result = eval_in_process(ckpt, tmp_path / "data", tmp_path / "out", *SIZES,
                             f"eval.class_subset={tmp_path / 'subset.txt'}", f"eval.predictions={tmp_path / 'p.csv'}")
    rows = predictions(tmp_path / "p.csv")
    files = [Path(r["path"]) for r in rows]
    expected = reference_logits(ckpt, files)[:, [10, 500, 999]].argmax(1)  # the folders' order
    assert [int(r["pred1"]) for r in rows] == expected.tolist()
    assert [int(r["target"]) for r in rows] == [0, 0, 1, 1, 2, 2]
    summary = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert summary["classes"] == 3 and summary["class_subset"] == str(tmp_path / "subset.txt")
    assert result.top1 == pytest.approx(100 * sum(e == t for e, t in zip(expected.tolist(), [0, 0, 1, 1, 2, 2])) / 6)


def test_a_class_subset_must_name_exactly_the_folders_and_classes_the_model_has(tmp_path):
    torch.save({"model": create_model("fishnet99", num_classes=1000).state_dict(), "arch": "fishnet99",
                "classes": [f"c{i}" for i in range(1000)]}, tmp_path / "w.pt")
    ckpt = load_checkpoint(str(tmp_path / "w.pt"), None)
    with pytest.raises(UserError, match=r"only in the folder: \['c3'\], only in the subset: \['c2'\]"):
        subset_outputs(ckpt, ["c1", "c2"], ["c1", "c3"], "s.txt", "/val")
    with pytest.raises(UserError, match=r"has no output for \['n0'\]"):
        subset_outputs(ckpt, ["c1", "n0"], ["c1", "n0"], "s.txt", "/val")
    assert subset_outputs(ckpt, ["c7", "c1"], ["c1", "c7"], "s.txt", "/val") == [1, 7]


def test_flip_tta_averages_the_logits_of_each_image_and_its_mirror(tmp_path):
    files = []
    for i in range(3):
        files.append(tmp_path / "data" / "val" / WNIDS[i] / "a.JPEG")
        write_jpeg(files[-1], i)
    ckpt = imagenet_checkpoint(tmp_path / "w.pt", files)
    eval_in_process(ckpt, tmp_path / "data", tmp_path / "out", *SIZES, "eval.tta=flip",
                    f"eval.class_subset={write_subset(tmp_path, WNIDS[:3])}", f"eval.predictions={tmp_path / 'p.csv'}")
    logits = reference_logits(ckpt, files)[:, :3]
    mirrored = reference_logits(ckpt, files, mirror=True)[:, :3]
    assert (logits - mirrored).abs().max() > 0.1  # else averaging them could not be told from not
    probs = torch.softmax((logits + mirrored) / 2, 1).max(1).values
    assert [float(r["prob1"]) for r in predictions(tmp_path / "p.csv")] == pytest.approx(probs.tolist(), abs=1e-4)
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["tta"] == "flip"


def write_subset(tmp_path: Path, wnids: list[str]) -> Path:
    (tmp_path / "subset.txt").write_text("\n".join(wnids))
    return tmp_path / "subset.txt"


def test_the_views_compute_what_they_say():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    x = torch.randn(2, 3, 2, 2)
    assert torch.allclose(FlipAverage(model)(x), (model(x) + model(x.flip(3))) / 2)
    assert torch.equal(ClassSubset(model, [4, 0])(x), model(x)[:, [4, 0]])


def test_real_labels_and_a_class_subset_together_are_refused():
    from fishnet_train.config import to_options
    from fishnet_train.validation import check_options

    from ..helpers import compose_eval

    with pytest.raises(UserError, match="cannot go with eval.class_subset"):
        check_options(to_options(compose_eval("checkpoint=x", "data.root=y", "eval.real_labels=r.json",
                                              "eval.class_subset=s.txt")))
    with pytest.raises(UserError, match="eval.tta='hflip' is not one of none, flip"):
        check_options(to_options(compose_eval("checkpoint=x", "data.root=y", "eval.tta=hflip")))
