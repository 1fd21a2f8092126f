"""fishnet-eval on the test sets as their downloads unpack: each scored against logits computed here, by the
model on the decoded images, with this project's checkpoints and the released layout."""
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fishnet_train.apps.eval_sets import EvalSet, imagenet_wnids, set_wnids, timm_info_file
from fishnet_train.errors import UserError
from fishnet_train.models import create_model, ours_to_released
from fishnet_train.training.checkpoint import FORMAT

from ..helpers import eval_in_process

SIZE = 32
SIZES = (f"data.val_resize={SIZE}", f"data.val_crop={SIZE}")
# The classes the model's bias ranks first, best first: far from their place in a text sort of 0..999.
FAVOURED = (537, 42, 999, 100, 7)
NOT_IN_A = 0  # tench: not one of ImageNet-A's 200 classes, so it wins over 1000 logits but not over A's


def favouring_model(favoured=FAVOURED):
    """FishNet-99 whose classifier bias ranks ``favoured`` first: the right label is known, whatever the image."""
    torch.manual_seed(0)
    model = create_model("fishnet99").eval()
    with torch.no_grad():
        model.classifier.fc.weight.mul_(0.01)
        model.classifier.fc.bias.zero_()
        for rank, k in enumerate(favoured):
            model.classifier.fc.bias[k] = 10.0 - rank
    return model


def save_checkpoints(model, folder: Path) -> dict[str, Path]:
    """The same weights as this project's training checkpoint and in the released layout (no class names)."""
    folder.mkdir()
    ours, released = folder / "last.pt", folder / "fishnet99_ckpt.tar"
    torch.save({"format": FORMAT, "model": model.state_dict(), "arch": "fishnet99", "classes": imagenet_wnids(),
                "config": {"data": {}}}, ours)
    torch.save({"epoch": 100, "state_dict": ours_to_released(model.state_dict())}, released)
    return {"ours": ours, "released": released}


def write_jpeg(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path, quality=90)


def write_set(root: Path, folders: list[str], extra: dict[str, int], name) -> Path:
    """One image in each of ``folders`` and ``extra[f]`` more in ``f``, named as the set names its files."""
    seed = 0
    for folder in folders:
        for i in range(1 + extra.get(folder, 0)):
            seed += 1
            write_jpeg(root / folder / name(folder, i, seed), seed)
    return root


def v2_name(folder, i, seed):
    return hashlib.sha1(f"{folder}/{i}".encode()).hexdigest() + ".jpeg"


def independent_figures(model, root: Path, label_of, outputs=None):
    """Top-1/top-5 (percent) from the model's logits on each decoded image, by ``label_of(folder)``."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))) for p in paths])
    x = ((pixels.float() / 255 - mean) / std).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = model(x)
    if outputs is not None:
        logits = logits[:, outputs]
    labels = torch.tensor([label_of(p.parent.name) for p in paths])
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    top1 = 100.0 * (top5[:, 0] == labels).float().mean().item()
    top5_hit = 100.0 * (top5 == labels[:, None]).any(1).float().mean().item()
    return top1, top5_hit, dict(zip(map(str, paths), top5[:, 0].tolist()))


@pytest.fixture(scope="module")
def model():
    return favouring_model()


@pytest.fixture(scope="module")
def checkpoints(model, tmp_path_factory):
    return save_checkpoints(model, tmp_path_factory.mktemp("ckpt") / "files")


@pytest.fixture(scope="module")
def imagenet_v2(tmp_path_factory):
    """imagenetv2-matched-frequency-format-val/<class index>/<sha1>.jpeg, most images in the favoured classes."""
    root = tmp_path_factory.mktemp("v2") / "imagenetv2-matched-frequency-format-val"
    extra = {"537": 6, "42": 3, "100": 2, "10": 2}
    return write_set(root, [str(i) for i in range(1000)], extra, v2_name)


def predictions(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("kind", [pytest.param("ours", marks=pytest.mark.slow), "released"])
def test_imagenet_v2_folders_are_class_indices_not_text_order(model, checkpoints, imagenet_v2, tmp_path, kind):
    top1, top5, pred1 = independent_figures(model, imagenet_v2, int)
    out = tmp_path / "eval"
    result = eval_in_process(checkpoints[kind], imagenet_v2, out, *SIZES, f"eval.predictions={tmp_path / 'p.csv'}")
    record = json.loads((out / "eval.json").read_text())
    assert record["set"] == "imagenet-v2" and record["images"] == 1013
    assert (result.top1, result.top5) == pytest.approx((top1, top5))
    assert top1 == pytest.approx(100.0 * 7 / 1013)  # the 7 images of folder 537, and only they
    rows = predictions(tmp_path / "p.csv")
    assert all(int(r["target"]) == int(Path(r["path"]).parent.name) for r in rows)
    assert all(int(r["pred1"]) == pred1[r["path"]] for r in rows)


def test_imagenet_v2_named_as_another_set_is_refused_with_what_it_holds(checkpoints, imagenet_v2, tmp_path):
    with pytest.raises(UserError, match=r"eval.set=imagenet-a: .* is not laid out as imagenet-a \(ImageNet-A's 200"):
        eval_in_process(checkpoints["ours"], imagenet_v2, tmp_path / "eval", *SIZES, "eval.set=imagenet-a")


def test_index_folders_given_as_a_val_split_are_refused_for_a_file_without_class_names(checkpoints, imagenet_v2,
                                                                                       tmp_path):
    """The text sort's wrong targets, reached through data.root/val, are refused rather than scored."""
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "val").symlink_to(imagenet_v2)
    with pytest.raises(UserError, match=r"class 0 of .* is '0', not 'n01440764'"):
        eval_in_process(checkpoints["released"], tmp_path / "root", tmp_path / "eval", *SIZES)


def a_name(folder, i, seed):
    return f"0.{seed:06d}_digital clock _ digital clock_0.{i:06d}.jpg"


@pytest.mark.parametrize("kind", ["ours", pytest.param("released", marks=pytest.mark.slow)])
def test_imagenet_a_is_scored_over_its_200_classes_logits(checkpoints, tmp_path, kind):
    a_wnids = set_wnids("imagenet-a")
    favoured_a = imagenet_wnids()[FAVOURED[1]]  # 42 (n01682714) is one of A's classes; 0 is not
    assert favoured_a in a_wnids and imagenet_wnids()[NOT_IN_A] not in a_wnids
    model = favouring_model((NOT_IN_A, *FAVOURED[1:]))
    ckpt = save_checkpoints(model, tmp_path / "ckpt")[kind]
    root = write_set(tmp_path / "imagenet-a", a_wnids, {favoured_a: 4}, a_name)
    (root / "README.txt").write_text("ImageNet-A\n\nn01498041 stingray\n")
    outputs = [int(line) for line in Path(timm_info_file("imagenet_a_indices.txt")).read_text().split()]
    top1, top5, _ = independent_figures(model, root, a_wnids.index, outputs)
    result = eval_in_process(ckpt, root, tmp_path / "eval", *SIZES)
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["set"] == "imagenet-a"
    assert (result.top1, result.top5) == pytest.approx((top1, top5))
    assert top1 == pytest.approx(100.0 * 5 / 204)  # over 1000 logits, tench would win every image


def test_a_folder_that_is_no_test_set_says_what_it_found_and_what_was_expected(checkpoints, tmp_path):
    for name in ("cats", "dogs"):
        write_jpeg(tmp_path / "pets" / name / "1.jpg", 1)
    with pytest.raises(UserError, match=r"holds 2 folders \(cats, dogs\), which is no known test set; expected val/"):
        eval_in_process(checkpoints["ours"], tmp_path / "pets", tmp_path / "eval", *SIZES)


@pytest.mark.slow
def test_imagenet_r_and_sketch_are_recognised_and_scored(model, checkpoints, tmp_path):
    r_wnids = set_wnids("imagenet-r")
    favoured = [w for w in r_wnids if imagenet_wnids().index(w) in FAVOURED]
    assert favoured, "one of the favoured classes must be one of R's"
    root = write_set(tmp_path / "imagenet-r", r_wnids, {favoured[0]: 3}, lambda f, i, s: f"art_{i}.jpg")
    (root / "README.txt").write_text("ImageNet-R\n")
    outputs = [int(line) for line in Path(timm_info_file("imagenet_r_indices.txt")).read_text().split()]
    top1, top5, _ = independent_figures(model, root, r_wnids.index, outputs)
    result = eval_in_process(checkpoints["released"], root, tmp_path / "eval_r", *SIZES)
    assert (result.top1, result.top5) == pytest.approx((top1, top5)) and top1 > 0
    wnids = imagenet_wnids()
    sketch = write_set(tmp_path / "sketch", wnids, {wnids[537]: 2}, lambda f, i, s: f"sketch_{i}.JPEG")
    top1, top5, _ = independent_figures(model, sketch, wnids.index)
    result = eval_in_process(checkpoints["ours"], sketch, tmp_path / "eval_s", *SIZES)
    assert json.loads((tmp_path / "eval_s" / "eval.json").read_text())["set"] == "imagenet-sketch"
    assert (result.top1, result.top5) == pytest.approx((top1, top5)) and top1 == pytest.approx(300 / 1002)


@pytest.mark.slow
def test_real_without_a_label_file_scores_val_against_the_copy_timm_ships(tmp_path):
    """ImageNet val laid out by wnid with its original names: ReaL top-1/top-5 against timm's real.json."""
    labels = json.loads(Path(timm_info_file("imagenet_real_labels.json")).read_text())
    wnids = imagenet_wnids()
    for k in range(1000):  # one image per class folder: val image k + 1, whatever its original class
        write_jpeg(tmp_path / "imagenet" / "val" / wnids[k] / f"ILSVRC2012_val_{k + 1:08d}.JPEG", k)
    scored = [s for s in labels[:1000] if s]
    counts = np.bincount([c for s in scored for c in s], minlength=1000)
    favoured = tuple(int(c) for c in np.argsort(-counts, kind="stable")[:5])  # ReaL's commonest classes there
    released = save_checkpoints(favouring_model(favoured), tmp_path / "ckpt")["released"]
    top1 = 100.0 * sum(favoured[0] in s for s in scored) / len(scored)
    top5 = 100.0 * sum(any(c in s for c in favoured) for s in scored) / len(scored)
    assert 0 < top1 < top5
    eval_in_process(released, tmp_path / "imagenet", tmp_path / "eval", *SIZES, "eval.set=real")
    record = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert record["set"] == "real" and record["real_images"] == len(scored)
    assert (record["real_top1"], record["real_top5"]) == pytest.approx((top1, top5))


def test_imagenet_vals_own_folders_are_told_from_sketch_by_their_file_names(tmp_path):
    from fishnet_train.apps.eval_sets import detect_set

    for root, name in (("val", "ILSVRC2012_val_00000001.JPEG"), ("sketch", "sketch_1.JPEG")):
        for wnid in imagenet_wnids():
            (tmp_path / root / wnid).mkdir(parents=True)
        (tmp_path / root / imagenet_wnids()[0] / name).touch()
    assert detect_set(str(tmp_path / "val")) == "val"
    assert detect_set(str(tmp_path / "sketch")) == "imagenet-sketch"
    from fishnet_train.apps.eval_sets import resolve_set
    from fishnet_train.config import DataConfig

    val = DataConfig(root=str(tmp_path / "val"))
    assert resolve_set(val, "auto", None, None) == EvalSet("val", str(tmp_path / "val"))
    assert resolve_set(val, "real", None, None) == EvalSet("real", str(tmp_path / "val"))
    with pytest.raises(UserError, match=r"data.root \S+/none is not a directory; point it at the test set's folder"):
        resolve_set(DataConfig(root=str(tmp_path / "none")), "auto", None, None)


def test_a_class_subset_of_your_own_reads_the_class_folders_at_data_root(model, checkpoints, tmp_path):
    """As ImageNet-R's folders unpack: no val/ above them."""
    wnids = [imagenet_wnids()[k] for k in (FAVOURED[1], FAVOURED[3], 5)]
    root = write_set(tmp_path / "mine", sorted(wnids), {wnids[0]: 2}, lambda f, i, s: f"art_{i}.jpg")
    (tmp_path / "subset.txt").write_text("# my three\n" + "\n".join(wnids) + "\n")
    outputs = [imagenet_wnids().index(w) for w in sorted(wnids)]
    top1, top5, _ = independent_figures(model, root, sorted(wnids).index, outputs)
    result = eval_in_process(checkpoints["ours"], root, tmp_path / "eval", *SIZES,
                             f"eval.class_subset={tmp_path / 'subset.txt'}")
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["set"] == "subset"
    assert (result.top1, result.top5) == pytest.approx((top1, top5)) and top1 == pytest.approx(60.0)


def folders(root: Path, names, first_file: str | None = "1.jpg") -> Path:
    """Class folders only (a listing is all the set's recognition reads), a file in the first."""
    for name in names:
        (root / name).mkdir(parents=True)
    if first_file:
        (root / sorted(names)[0] / first_file).touch()
    return root


@pytest.mark.parametrize("requested, real, subset, name", [
    ("auto", None, None, "val"), ("val", None, None, "val"), ("real", None, None, "real"),
    ("auto", "real.json", None, "real"), ("val", "real.json", None, "real"), ("auto", None, "s.txt", "subset"),
])
def test_imagenet_val_is_named_by_what_is_scored_on_it(tmp_path, requested, real, subset, name):
    from fishnet_train.apps.eval_sets import resolve_set
    from fishnet_train.config import DataConfig

    folders(tmp_path / "val", ["a", "b"])
    chosen = resolve_set(DataConfig(root=str(tmp_path)), requested, real, subset)
    assert (chosen.name, chosen.folder, chosen.subset) == (name, str(tmp_path / "val"), ())


@pytest.mark.parametrize("name, layout", [
    ("imagenet-v2", "class folders 0..999"), ("imagenet-a", "ImageNet-A's 200 wnid folders"),
    ("imagenet-r", "ImageNet-R's 200 wnid folders"), ("imagenet-sketch", "ImageNet's 1000 wnid folders"),
])
def test_a_set_named_on_another_layout_is_refused_saying_what_it_expected(tmp_path, name, layout):
    from fishnet_train.apps.eval_sets import resolve_set
    from fishnet_train.config import DataConfig

    other = "imagenet-r" if name == "imagenet-a" else "imagenet-a"
    root = folders(tmp_path / other, set_wnids(other))
    with pytest.raises(UserError, match=rf"^eval.set={name}: data.root=\S+ is not laid out as {name} \({layout}\); "):
        resolve_set(DataConfig(root=str(root)), name, None, None)
    chosen = resolve_set(DataConfig(root=str(root)), other, None, None)
    assert (chosen.name, chosen.folder, chosen.subset) == (other, str(root), tuple(set_wnids(other)))


def test_hidden_folders_and_an_empty_first_class_do_not_change_the_set(tmp_path):
    from fishnet_train.apps.eval_sets import detect_set

    root = folders(tmp_path / "imagenet-a", set_wnids("imagenet-a") + [".ipynb_checkpoints"], first_file=None)
    assert detect_set(str(root)) == "imagenet-a"
    sketch = folders(tmp_path / "sketch", imagenet_wnids(), first_file=None)
    assert detect_set(str(sketch)) == "imagenet-sketch"


def test_a_folder_of_other_folders_shows_three_of_them_and_says_if_there_are_more(tmp_path):
    from fishnet_train.apps.eval_sets import detect_set

    with pytest.raises(UserError, match=r"holds 3 folders \(a, b, c\), which"):
        detect_set(str(folders(tmp_path / "three", ["a", "b", "c"])))
    with pytest.raises(UserError, match=r"holds 4 folders \(a, b, c \.\.\.\), which"):
        detect_set(str(folders(tmp_path / "four", ["a", "b", "c", "d"])))
