"""An exponential moving average of the weights (torch's AveragedModel), saved in the checkpoint."""
from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..models import Network, load_weights


class WeightAverage:
    """EMA of ``model``'s parameters and BN buffers (as torchvision's references average them),
    updated every ``every_steps`` optimiser steps. The first update copies the weights; within the
    first ``warmup_steps`` (the learning-rate warmup) the count is reset after each update, as
    torchvision's references reset it, so the average starts from the first weights after the warmup
    rather than remembering the warmup's."""

    def __init__(self, model: nn.Module, decay: float, every_steps: int, warmup_steps: int = 0) -> None:
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.averaged.requires_grad_(False)
        self.every_steps, self.warmup_steps = every_steps, warmup_steps

    @property
    def model(self) -> Network:
        return cast(Network, self.averaged.module)

    def after_step(self, model: nn.Module, step: int) -> None:
        """``step``: optimiser steps done so far (the step just taken was a warmup step if ``step <= warmup_steps``)."""
        if step % self.every_steps == 0:
            self.averaged.update_parameters(model)
            if step <= self.warmup_steps:
                self.averaged.n_averaged.zero_()

    def state(self) -> dict[str, Any]:
        """The checkpoint's EMA entries."""
        return {"model_ema": self.model.state_dict(), "ema_updates": int(self.averaged.n_averaged.item())}

    def load_state(self, state: dict[str, Any]) -> None:
        """From a checkpoint (or ``state()``) that has the EMA entries."""
        load_weights(self.model, state["model_ema"])
        with torch.no_grad():
            self.averaged.n_averaged.fill_(state["ema_updates"])
