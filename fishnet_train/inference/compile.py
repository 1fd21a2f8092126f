"""``torch.compile`` for inference."""
from __future__ import annotations

import contextlib


def inference_compiler(enabled: bool) -> contextlib.AbstractContextManager:
    """With ``enabled``, inductor freezes the weights into the graph (constant folding,
    prepacked convolution weights) for models compiled inside the block."""
    if not enabled:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)
