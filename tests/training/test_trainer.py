"""``train(options, run_dir)`` in this process: what a run writes, resumes and what its options do."""
import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms
from torchvision.datasets import ImageFolder

from fishnet_train.config import LossConfig, to_options
from fishnet_train.errors import UserError
from fishnet_train.models import create_model, load_weights, ours_to_released
from fishnet_train.training.build import build_schedule
from fishnet_train.training.loop import TrainingStopped
from fishnet_train.training.trainer import train

from ..conftest import write_image_folder
from ..data.test_datasets import plant_odd_files
from ..helpers import PRESETS, Crash, assert_same_tensors, compose_train, crash_at, metrics, saved_state, tiny_options

# Every key of metrics.jsonl the docs (training.md, Outputs) document.
METRIC_KEYS = {"epoch", "step", "train_loss", "val_loss", "top1", "top5", "lr", "images_per_sec", "data_wait",
               "epoch_seconds", "skipped_images", "best_top1", "best_epoch"}


@pytest.fixture(autouse=True)
def _restore_process_settings():
    """A run sets process-wide flags (determinism, seeds); later tests get them back as they were."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


def step_counter(steps: list):
    return lambda progress: steps.append(progress.step)


@pytest.fixture(scope="module")
def seven_classes(tmp_path_factory):
    """Seven classes (so top-5 is not trivially 100) and a three-epoch run, validated every second epoch."""
    root = tmp_path_factory.mktemp("seven")
    data = write_image_folder(root / "data", classes=7, train_per_class=4, val_per_class=2)
    run_dir = root / "run"
    record = train(tiny_options(data, "trainer.epochs=3", "trainer.eval_every=2", "data.batch_size=7"), str(run_dir))
    return data, run_dir, record


def test_a_run_writes_config_checkpoints_metrics_and_tensorboard(seven_classes):
    data, run_dir, record = seven_classes
    for name in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").glob("events.out.tfevents.*"))
    assert not list(run_dir.glob("checkpoints/*.tmp.*"))
    assert f"root: {data}" in (run_dir / "config.yaml").read_text()
    records = metrics(run_dir)
    assert records[-1] == record
    assert [r["epoch"] for r in records] == [1, 2, 3] and [r["step"] for r in records] == [4, 8, 12]
    for r in records:
        assert set(r) == METRIC_KEYS
        assert r["train_loss"] > 0 and r["images_per_sec"] > 0 and r["epoch_seconds"] > 0 and r["skipped_images"] == 0


def test_eval_every_validates_on_due_epochs_and_after_the_last(seven_classes):
    _, run_dir, _ = seven_classes
    records = metrics(run_dir)
    assert [r["top1"] is not None for r in records] == [False, True, True]
    assert (records[0]["best_top1"], records[0]["best_epoch"]) == (-1, -1)  # nothing validated yet


def test_each_epoch_reports_the_scheduled_learning_rate_of_its_last_step(seven_classes):
    data, run_dir, _ = seven_classes
    options = tiny_options(data, "trainer.epochs=3")
    schedule = build_schedule(options.optim, options.schedule, steps_per_epoch=4, epochs=3)
    for r in metrics(run_dir):
        assert r["lr"] == pytest.approx(schedule(r["step"] - 1)) and r["lr"] > 0


def test_best_pt_is_the_checkpoint_of_the_best_validated_epoch(seven_classes):
    _, run_dir, _ = seven_classes
    records = [r for r in metrics(run_dir) if r["top1"] is not None]
    best = max(records, key=lambda r: r["top1"])  # the first of equals, as the trainer keeps it
    state = saved_state(run_dir, "best.pt")
    assert state["progress"]["epoch"] == best["epoch"] == state["progress"]["best_epoch"]
    if best["epoch"] < records[-1]["epoch"]:  # then best.pt holds other weights than last.pt
        assert any(not torch.equal(v, saved_state(run_dir)["model"][k]) for k, v in state["model"].items())
    assert records[-1]["best_epoch"] == best["epoch"] and records[-1]["best_top1"] == best["top1"]


def test_epoch_figures_equal_an_independent_evaluation_of_the_saved_weights(seven_classes):
    data, run_dir, record = seven_classes
    model = load_weights(create_model("fishnet99", num_classes=7), run_dir / "checkpoints" / "last.pt").eval()
    tf = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    images, targets = zip(*ImageFolder(data / "val", tf))
    with torch.no_grad():
        logits = model(torch.stack(images))
    targets = torch.tensor(targets)
    top5 = logits.topk(5, 1).indices.eq(targets[:, None]).any(1).float().mean().item() * 100
    assert record["top1"] == pytest.approx(logits.argmax(1).eq(targets).float().mean().item() * 100)
    assert record["top5"] == pytest.approx(top5)
    assert record["val_loss"] == pytest.approx(F.cross_entropy(logits, targets).item(), rel=5e-3)  # resize rounding


@pytest.mark.slow  # several seconds: make test keeps to its 5 minutes
def test_a_crash_mid_epoch_with_lighting_and_flips_resumes_bit_identical(tiny_cfg, tmp_path):
    overrides = ["data.lighting=0.1", "data.hflip=true", "trainer.checkpoint_every_steps=1", "trainer.epochs=2"]
    reference = tmp_path / "reference"
    train(tiny_cfg(*overrides), str(reference))
    run_dir = tmp_path / "crashed"
    crash_step = random.Random(7).randint(5, 7)  # in the second epoch (4 steps each), not at its start
    with pytest.raises(Crash):
        train(tiny_cfg(*overrides), str(run_dir), after_step=crash_at(crash_step))
    saved = saved_state(run_dir)["progress"]
    assert saved["epoch"] == 1 and saved["epoch_step"] == crash_step - 1 - 4 > 0  # mid-epoch
    steps = []
    train(tiny_cfg(*overrides), str(run_dir), after_step=step_counter(steps))
    assert steps == list(range(crash_step, 9))  # it went on from last.pt, not from the start
    a, b = saved_state(reference), saved_state(run_dir)
    assert_same_tensors(a["model"], b["model"])
    for i, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2]


def _one_step(data, run_dir, *overrides):
    train(tiny_options(data, "trainer.epochs=1", "trainer.max_steps_per_epoch=1", "trainer.eval_every=5",
                       *overrides), str(run_dir))
    return saved_state(run_dir)["model"]


def _differ(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_the_runtime_settings_come_from_the_options_and_are_logged(image_folder, tmp_path, caplog):
    with caplog.at_level("INFO"):
        _one_step(image_folder, tmp_path / "run", "trainer.host_allocator=system", "trainer.seed=3")
    assert "runtime: seed 3+rank, deterministic true, " in caplog.text and "host allocator system" in caplog.text


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_pca_lighting_draws_reach_the_preprocessing_in_training(image_folder, tmp_path, monkeypatch):
    from fishnet_train.data import BatchPreprocess

    alphas = []
    original = BatchPreprocess.__call__

    def spy(self, images, alpha=None):
        alphas.append(alpha)
        return original(self, images, alpha)

    monkeypatch.setattr(BatchPreprocess, "__call__", spy)
    _one_step(image_folder, tmp_path / "run", "data.lighting=0.1")
    assert alphas[0] is not None and alphas[0].abs().sum() > 0  # the training step's; validation passes none


@pytest.mark.slow  # over 6 s on 2 cores
def test_bf16_autocast_trains_with_other_numerics_than_fp32(image_folder, tmp_path):
    fp32 = _one_step(image_folder, tmp_path / "fp32")
    bf16 = _one_step(image_folder, tmp_path / "bf16", "trainer.amp=bf16")
    assert all(torch.isfinite(v).all() for v in bf16.values() if v.is_floating_point())
    assert _differ(fp32, bf16)


@pytest.mark.slow  # over 6 s on 2 cores
def test_dropout_is_active_in_training(image_folder, tmp_path):
    assert _differ(_one_step(image_folder, tmp_path / "plain"),
                   _one_step(image_folder, tmp_path / "dropout", "model.drop_rate=0.5"))


@pytest.mark.slow  # over 6 s on 2 cores
def test_grad_checkpointing_recomputes_the_stages_and_trains_alike(image_folder, tmp_path, monkeypatch):
    import fishnet_train.models.fishnet as fishnet

    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    plain = _one_step(image_folder, tmp_path / "plain", "trainer.channels_last=false")
    monkeypatch.setattr(fishnet, "checkpoint", counting)
    checkpointed = _one_step(image_folder, tmp_path / "ckpt", "model.grad_checkpointing=true",
                             "trainer.channels_last=false")
    assert calls
    for key in plain:
        torch.testing.assert_close(plain[key], checkpointed[key], msg=key)


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_fine_tuning_keeps_a_released_backbone_and_replaces_its_classifier(image_folder, tmp_path):
    torch.manual_seed(3)
    source = create_model("fishnet99")
    released = tmp_path / "fishnet99_ckpt.tar"
    torch.save({"epoch": 100, "arch": "fishnet99", "best_prec1": 77.41, "optimizer": {},
                "state_dict": ours_to_released(source.state_dict())}, released)
    tuned = _one_step(image_folder, tmp_path / "run", f"model.pretrained={released}", "optim.lr=0")
    expected = source.state_dict()
    parameters = {name for name, _ in source.named_parameters()}
    for key in parameters - {"classifier.fc.weight", "classifier.fc.bias"}:
        assert torch.equal(tuned[key], expected[key]), key  # lr 0: the loaded weights, unchanged
    assert tuned["classifier.fc.weight"].shape[0] == 3


@pytest.mark.slow  # over 6 s on 2 cores
def test_a_linear_probe_from_safetensors_trains_only_the_classifier_and_resumes(image_folder, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(4)
    source = create_model("fishnet99", num_classes=3)
    weights = tmp_path / "w.safetensors"
    save_file(source.state_dict(), str(weights))
    probe = ("trainer.epochs=2", f"model.pretrained={weights}", "model.freeze_backbone=true", "optim.lr=0.05")
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        train(tiny_options(image_folder, *probe), str(run_dir), after_step=crash_at(5))
    train(tiny_options(image_folder, *probe), str(run_dir))  # resumes from the first epoch's last.pt
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2]  # epoch 1 from the first run: resumed, not restarted
    tuned, expected = saved_state(run_dir)["model"], source.state_dict()
    for key in set(expected) - {"classifier.fc.weight", "classifier.fc.bias"}:
        assert torch.equal(tuned[key], expected[key]), key  # weights and BN statistics as loaded
    assert not torch.equal(tuned["classifier.fc.weight"], expected["classifier.fc.weight"])


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_the_backbone_trains_at_a_fraction_of_the_rate(image_folder, tmp_path):
    _one_step(image_folder, tmp_path / "run", "optim.backbone_lr_scale=0.25")
    head, backbone = sorted(saved_state(tmp_path / "run")["optimizer"]["param_groups"], key=lambda g: len(g["params"]))
    assert len(head["params"]) == 2  # the classifier's weight and bias, at the full rate
    assert head["lr"] == pytest.approx(backbone["lr"] / 0.25)


def test_the_configured_classifier_init_reaches_the_model():
    from fishnet_train.training.build import build_model

    model = build_model(to_options(compose_train("data.root=/d", "model.classifier_init=zeros")).model, 10)
    assert not model.classifier.fc.weight.any()


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_resume_with_other_parameter_groups_is_one_clear_error(image_folder, tmp_path):
    _one_step(image_folder, tmp_path / "run")
    with pytest.raises(UserError, match="optimizer state does not fit .*optim.backbone_lr_scale.*model.pretrained="):
        _one_step(image_folder, tmp_path / "run", "optim.backbone_lr_scale=0.1", "trainer.epochs=2",
                  f"trainer.resume={tmp_path / 'run' / 'checkpoints' / 'last.pt'}")  # named: a deliberate change


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_resume_with_another_optimizer_is_one_clear_error(image_folder, tmp_path):
    _one_step(image_folder, tmp_path / "run")
    with pytest.raises(UserError, match="^trainer.resume: the checkpoint's optimizer state is sgd's, but "
                                        "optim.name=adamw: set optim.name=sgd"):
        _one_step(image_folder, tmp_path / "run", "optim=adamw", "trainer.epochs=2",
                  f"trainer.resume={tmp_path / 'run' / 'checkpoints' / 'last.pt'}")


@pytest.mark.parametrize("key", ["model.pretrained", "trainer.resume"])
def test_a_file_that_is_no_checkpoint_is_refused_naming_the_option_that_gave_it(image_folder, tmp_path, key):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    with pytest.raises(UserError, match=rf"^{key}: .*notes.txt is not a PyTorch checkpoint"):
        _one_step(image_folder, tmp_path / "run", f"{key}={notes}")


def test_a_missing_pretrained_file_is_refused_naming_the_option():
    from fishnet_train.training.build import check_inputs

    with pytest.raises(UserError, match="^model.pretrained: checkpoint not found: /nonexistent/w.pt"):
        check_inputs(to_options(compose_train("data.root=/d", "model.pretrained=/nonexistent/w.pt")))


@pytest.mark.slow  # over 6 s on 2 cores
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_cfg("trainer.epochs=1"), str(run_dir))
    before = saved_state(run_dir)
    with pytest.raises(TrainingStopped, match=r"loss became .* \(epoch 2\)"):  # it resumed after epoch 1
        train(tiny_cfg("trainer.epochs=2", "optim.lr=1e30", "trainer.clip_grad_norm=null",
                       f"trainer.resume={run_dir / 'checkpoints' / 'last.pt'}"), str(run_dir))  # a deliberate change
    after = saved_state(run_dir)
    assert after["progress"] == before["progress"]
    assert_same_tensors(before["model"], after["model"])


@pytest.mark.slow  # over 6 s on 2 cores
def test_undecodable_files_are_replaced_counted_and_reported_once(image_folder, tiny_cfg, tmp_path, caplog):
    _, bad = plant_odd_files(image_folder / "train" / "class_0")
    (image_folder / "val" / "class_2" / "broken_val.jpg").write_bytes(b"")
    bad.add("broken_val.jpg")
    files = sum(1 for p in (image_folder / "train").rglob("*") if p.is_file())
    run_dir = tmp_path / "run"
    with caplog.at_level("WARNING"):  # one step of the whole folder per epoch: every file is drawn
        train(tiny_cfg(f"data.batch_size={files}"), str(run_dir))
    reported = [r.getMessage() for r in caplog.records if "skipped undecodable file" in r.getMessage()]
    names = [line.split("file ")[1].split(":")[0].rsplit("/", 1)[1] for line in reported]
    assert sorted(names) == sorted(bad)  # each bad file, once over both epochs
    assert all(r["skipped_images"] >= len(bad) for r in metrics(run_dir))  # the val file counted once, not per rank


def test_options_reach_the_trainer_typed_and_frozen(tiny_cfg):
    options = tiny_cfg()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.trainer.epochs = 5
    assert isinstance(options.data.mean, tuple) and isinstance(options.schedule.milestones, tuple)


# paper, cosine_ls and modern with the default model are fishnet150_paper, _cosine_ls and _modern
# (tests/test_config.py checks the composition): each recipe trains once.
# The FishNet-201 ones are the same recipes on the largest model, and fishnet150_paper and _cosine_ls those of
# fishnet99_paper and fishnet150_modern with fewer options, and the baselines' the paper's recipe on another
# model: they run with the slow tests.
SLOW_PRESETS = ("fishnet201", "fishnet150_paper", "fishnet150_cosine_ls", "resnet", "densenet")


@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.slow) if p.startswith(SLOW_PRESETS) else p
                                    for p in PRESETS if p not in ("paper", "cosine_ls", "modern")])
def test_every_preset_trains_a_step_in_the_trainer(preset, image_folder, tmp_path):
    """Each preset's optimiser, schedule, loss and augmentations run; only sizes and lengths are shrunk."""
    options = to_options(compose_train(
        f"experiment={preset}", f"data.root={image_folder}", "model.num_classes=null", "trainer.device=cpu",
        "data.batch_size=4", "data.workers=2", "data.train_crop=32", "data.val_resize=32", "data.val_crop=32",
        "trainer.epochs=1", "trainer.max_steps_per_epoch=1", "trainer.clip_grad_norm=1.0", "schedule.milestones=[]",
        "schedule.warmup_epochs=0"))
    record = train(options, str(tmp_path / "run"))
    assert record["step"] == 1 and record["top1"] is not None
    assert saved_state(tmp_path / "run")["arch"] == options.model.name


@pytest.mark.parametrize("region_decode", [True, False])
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_run_on_jpegs_without_restart_markers_says_how_to_add_them(tmp_path, caplog, region_decode):
    data = write_image_folder(tmp_path / "data", ext="jpg")
    with caplog.at_level("WARNING"):
        _one_step(data, tmp_path / "run", f"data.region_decode={region_decode}")
    hint = f"tools/add_restart_markers.py {data / 'train'} {data / 'train'}"
    assert (hint in caplog.text) is region_decode


@pytest.fixture
def prepared(image_folder, tmp_path, monkeypatch):
    """``prepared(*overrides)``: the run ``prepare`` builds from a tiny run's options (on a one-block
    FishNet, to be quick)."""
    import fishnet_train.training.trainer as trainer
    from fishnet_train.models import FishNet
    from fishnet_train.processes.distributed import DistInfo
    from fishnet_train.reporting import Reporter

    from ..helpers import TINY_FISHNET

    monkeypatch.setattr(trainer, "build_model", lambda m, n: FishNet(**TINY_FISHNET, num_classes=n))
    runs = []

    def prepare(*overrides):
        run_dir = str(tmp_path / f"run{len(runs)}")
        reporter = Reporter(run_dir, True)
        runs.append(trainer.prepare(tiny_options(image_folder, *overrides), run_dir, DistInfo(), reporter))
        reporter.close()
        return runs[-1]

    return prepare


def _mixer(run, kind):
    mix = run.parts.augment.mix if run.parts.augment is not None else None
    return mix.alpha if type(mix).__name__ == kind else None


def _layout(run):
    conv = run.parts.model.stem.conv1.weight
    return (run.data.preprocess.channels_last, conv.is_contiguous(memory_format=torch.channels_last))


# (overrides, what the run holds of them, its value with the tiny run's defaults, its value with the overrides)
REACHED = {
    "accum_steps": (["trainer.accum_steps=2"], lambda r: (r.loop.accum_steps, r.data.train_loader.batch_size),
                    (1, 6), (2, 3)),
    "checkpoint_every_steps": (["trainer.checkpoint_every_steps=3"], lambda r: r.loop.checkpoint_every_steps, 0, 3),
    "ema": (["model.ema_decay=0.5", "model.ema_every_steps=3"],
            lambda r: r.parts.ema and (r.parts.ema.every_steps, r.parts.ema.warmup_steps), None, (3, 4)),
    "random_erase": (["data.random_erase=0.3"], lambda r: r.parts.augment and r.parts.augment.random_erase, None, 0.3),
    "mixup": (["data.mixup_alpha=0.2"], lambda r: _mixer(r, "MixUp"), None, 0.2),
    "cutmix": (["data.cutmix_alpha=0.7"], lambda r: _mixer(r, "CutMix"), None, 0.7),
    "repeated_aug": (["data.repeated_aug=2"], lambda r: r.data.train_sampler.repeats, 1, 2),
    "seed": (["trainer.seed=5"], lambda r: (r.data.train_sampler.seed, r.loop.seed), (0, 0), (5, 5)),
    "channels_last": (["trainer.channels_last=false"], _layout, (True, True), (False, False)),
    "loss": (["loss.name=bce", "loss.label_smoothing=0.1", "loss.bce_target_thresh=0.2"],
             lambda r: r.loop.loss, LossConfig(), LossConfig("bce", 0.1, 0.2)),
}


@pytest.mark.parametrize("option", REACHED)
def test_each_training_option_reaches_the_part_of_the_run_that_uses_it(prepared, option):
    overrides, held, default, value = REACHED[option]
    assert held(prepared()) == default
    assert held(prepared(*overrides)) == value


def test_the_ema_is_built_with_the_configured_decay_and_period_and_only_when_asked():
    from fishnet_train.config import ModelConfig
    from fishnet_train.models import FishNet
    from fishnet_train.training.trainer import build_ema

    from ..helpers import TINY_FISHNET

    torch.manual_seed(0)
    model = FishNet(**TINY_FISHNET, num_classes=3)
    assert build_ema(ModelConfig(), model, 0) is None
    ema = build_ema(ModelConfig(ema_decay=0.25, ema_every_steps=2), model, warmup_steps=0)
    weights = lambda: [q.detach().clone() for q in model.parameters()]  # noqa: E731
    with torch.no_grad():
        ema.after_step(model, 2)  # the first update copies
        first = weights()
        for step in (3, 4):
            for q in model.parameters():
                q.add_(0.01 * step)
            ema.after_step(model, step)  # step 3 is no update: every second step
    for average, a, b in zip(ema.model.parameters(), first, weights()):
        torch.testing.assert_close(average, 0.25 * a + 0.75 * b)
