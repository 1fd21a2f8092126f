"""Inference-only rewrites of a trained FishNet: the same outputs up to float rounding, faster.

``fuse_for_inference`` folds BatchNorms into convolutions (and on the CPU runs the wide 3x3
convolutions by Winograd F(4x4, 3x3)); ``inference_compiler`` is the inductor setting that
``trainer.compile=true`` evaluation uses. The trainer's validation and ``fishnet-eval`` both
take their model through here.
"""
from .compile import inference_compiler
from .fuse import fuse_for_inference
from .winograd import WinogradConv2d, winograd_conv3x3, winograd_eligible

__all__ = ["WinogradConv2d", "fuse_for_inference", "inference_compiler", "winograd_conv3x3", "winograd_eligible"]
