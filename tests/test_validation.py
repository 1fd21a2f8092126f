"""Every value a type cannot catch is refused with one line naming the key: before anything runs."""
import pytest

from fishnet_train.config import to_options
from fishnet_train.errors import UserError
from fishnet_train.validation import AUTO_AUGMENTS, CLASSIFIER_INITS, MIN_INPUT_SIZE, TRAIN_DECODES, check_options

from .helpers import compose_eval, compose_export, compose_predict, compose_train


@pytest.mark.parametrize("overrides, message", [
    (["optim.momentum=1.0"], r"optim.momentum must be in \[0, 1\), got 1.0"),
    (["optim.lr=-0.1"], "optim.lr must be zero or more"),
    (["optim.nesterov=true", "optim.momentum=0"], "optim.nesterov=true needs momentum"),
    (["data.train_crop=31"], "data.train_crop=31 is below the models' smallest input"),
    (["data.train_crop=9223372036854775808"], "data.train_crop=9223372036854775808 is larger than 8192 px"),
    (["data.val_crop=300"], "data.val_crop=300 is larger than data.val_resize=256"),
    (["data.mean=[0.5,0.5]"], r"data.mean needs one value per RGB channel \(3\)"),
    (["data.std=[0.2,0,0.2]"], "data.std must be positive"),
    (["data.lighting=nan"], "data.lighting must be a finite number"),
    (["data.crop_ratio=[2,1]"], "data.crop_ratio must be"),
    (["data.crop_scale=[0.9,0.1]"], "data.crop_scale must be"),
    (["trainer.epochs=-1"], "trainer.epochs must be positive"),
    (["data.eval_batch_size=0"], "data.eval_batch_size must be positive or null"),
    (["data.eval_batch_size=9223372036854775808"], "data.eval_batch_size=9223372036854775808 is larger than any"),
    (["data.batch_size=1048577"], "data.batch_size=1048577 is larger than any batch trained on"),
    (["optim.lr_base_batch=0"], r"optim.lr_base_batch must be positive or null, got 0 \(null: optim.lr as given\)"),
    (["trainer.keep_epochs=-1"], "trainer.keep_epochs must not be negative"),
    (["trainer.max_steps_per_epoch=0"], "trainer.max_steps_per_epoch must be positive or null"),
    (["trainer.clip_grad_norm=0"], "trainer.clip_grad_norm must be positive"),
    (["trainer.seed=-1"], "trainer.seed"),
    (["trainer.epochs=10"], r"schedule.milestones \[30, 60, 90\] include epochs .* schedule.milestones=\[3, 6, 9\]"),
    (["schedule.milestones=[60,30]"], "schedule.milestones must be increasing"),
    (["schedule.gamma=0"], "schedule.gamma must be in"),
    (["schedule=cosine", "schedule.min_lr=0.5"], r"schedule.min_lr must be in \[0, 0.1\]"),
    (["schedule.warmup_epochs=101"], "schedule.warmup_epochs=101 is longer than the run"),
    (["schedule.warmup_start_factor=0"], "schedule.warmup_start_factor must be in"),
    (["loss.label_smoothing=1"], "loss.label_smoothing must be in"),
    (["model.num_classes=0"], "model.num_classes must be positive or null"),
    (["model.drop_rate=1"], "model.drop_rate must be in"),
    (["trainer.host_allocator=jemalloc"], "trainer.host_allocator='jemalloc' is not one of keep_freed, system"),
    (["model.classifier_init=xavier"], "model.classifier_init='xavier' is not one of auto, released, zeros"),
    (["optim.backbone_lr_scale=-0.1"], "optim.backbone_lr_scale must be zero or more"),
    (["data.auto_augment=rand"], "data.auto_augment='rand' is not one of ra, ta_wide, aa"),
    (["data.ra_magnitude=31"], r"data.ra_magnitude must be in \[0, 30\]"),
    (["data.random_erase=1.5"], r"data.random_erase must be in \[0, 1\]"),
    (["data.mixup_alpha=-1"], "data.mixup_alpha must be zero or more"),
    (["data.repeated_aug=0"], "data.repeated_aug must be positive"),
    (["data.progressive_min_crop=256"], r"data.progressive_min_crop=256 must be in \[32, data.train_crop=224\]"),
    (["data.progressive_min_crop=128", "data.progressive_epochs=[50,120]"], "data.progressive_epochs must be"),
    (["data.progressive_min_crop=128"], r"0 <= start < end <= trainer.epochs=100 .* got \[0, 0\]"),
    (["data.repeated_aug=3"], "data.batch_size=256 is not a multiple of data.repeated_aug=3"),
    (["optim=adamw", "optim.betas=[0.9,1.0]"], r"optim.betas\[1\] must be in \[0, 1\)"),
    (["optim.name=adam"], "optim.name='adam' is not one of sgd, adamw, lamb, lars"),
    (["optim=lars", "optim.trust_coefficient=0"], "optim.trust_coefficient must be positive"),
    (["loss.name=focal"], "loss.name='focal' is not one of ce, bce"),
    (["loss.bce_target_thresh=0.2"], "loss.bce_target_thresh applies to loss.name=bce only"),
    (["model.ema_decay=1.0"], r"model.ema_decay must be in \(0, 1\)"),
    (["trainer.best_by=ema_top1"], "trainer.best_by=ema_top1 needs EMA weights"),
    # values no schedule may take, refused whether the chosen schedule reads them or not
    (["schedule=cosine", "schedule.gamma=-0.1"], r"schedule.gamma must be in \(0, 1\], got -0.1"),
    (["schedule=cosine", "schedule.milestones=[20,10]"], r"schedule.milestones must be increasing positive epochs"),
    (["name=../other"], "name='../other': a run name is one directory name"),
])
def test_train_values_that_cannot_be_meant_are_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        check_options(to_options(compose_train("data.root=/data", *overrides)))


def test_a_batch_that_does_not_split_over_the_known_processes_is_refused():
    options = to_options(compose_train("data.root=/data", "data.batch_size=6", "trainer.accum_steps=2"))
    check_options(options, world_size=3)
    with pytest.raises(UserError, match="does not split over 2 processes x trainer.accum_steps=2; use a multiple of 4"):
        check_options(options, world_size=2)


def test_batch_norm_needs_two_values_at_the_smallest_progressive_crop():
    options = to_options(compose_train("data.root=/data", "data.batch_size=1", "data.train_crop=64"))
    check_options(options, world_size=1)  # 2x2 deepest features at 64 px
    small_first = to_options(compose_train("data.root=/data", "data.batch_size=1", "data.train_crop=64",
                                           "data.progressive_min_crop=32", "data.progressive_epochs=[0,10]"))
    with pytest.raises(UserError, match="a micro-batch of 1 image at a 32 px training crop"):
        check_options(small_first, world_size=1)


def test_eval_options_are_checked_too_but_the_sizes_once_merged_with_the_checkpoints():
    with pytest.raises(UserError, match="data.batch_size must be positive"):
        check_options(to_options(compose_eval("checkpoint=x.pt", "data.root=/d", "data.batch_size=0")))
    # The checkpoint's crop may be smaller: apps.trained_model.inference_data checks the merged sizes.
    check_options(to_options(compose_eval("checkpoint=x.pt", "data.root=/d", "data.val_resize=48")))


def test_the_smallest_input_and_the_classifier_inits_are_the_models():
    from fishnet_train.data.augment import AUTO_AUGMENTS as data_policies
    from fishnet_train.models.fishnet import CLASSIFIER_INITS as model_inits
    from fishnet_train.models.fishnet import MIN_INPUT_SIZE as model_minimum

    assert MIN_INPUT_SIZE == model_minimum and CLASSIFIER_INITS == model_inits and AUTO_AUGMENTS == data_policies


def test_the_decode_settings_are_the_transforms():
    from fishnet_train.data.transforms import TRAIN_DECODES as transform_decodes

    assert set(TRAIN_DECODES) == set(transform_decodes) and len(TRAIN_DECODES) == len(transform_decodes)


@pytest.mark.parametrize("overrides, message", [
    (["predict.topk=0"], "predict.topk must be positive"),
    (["predict.output=out.txt"], "predict.output=out.txt must end in .csv or .jsonl"),
])
def test_predict_values_are_checked(overrides, message):
    with pytest.raises(UserError, match=message):
        check_options(to_options(compose_predict("checkpoint=x.pt", "inputs=img", *overrides)))


@pytest.mark.parametrize("overrides, message", [
    (["format=tflite", "output=m.tflite"], "format='tflite' is not one of safetensors, onnx, torch_export"),
    (["format=onnx", "output=m.bin"], r"output=m.bin: a onnx export is named \*.onnx .* e.g. output=model.onnx"),
    (["output=m.pt"], r"a safetensors export is named \*.safetensors"),
    (["format=onnx", "output=m.onnx", "opset=17"], "opset=17 is below 18"),
])
def test_export_values_are_checked(overrides, message):
    with pytest.raises(UserError, match=message):
        check_options(to_options(compose_export("checkpoint=x.pt", *overrides)))


def test_export_and_predict_defaults_pass():
    check_options(to_options(compose_export("checkpoint=x.pt", "output=m.safetensors")))
    check_options(to_options(compose_predict("checkpoint=x.pt", "inputs=img", "predict.output=p.jsonl")))
