"""``fishnet-export``: a checkpoint as safetensors weights, an ONNX model or a torch.export program."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .common import overridden_keys, run_app


@hydra.main(version_base="1.3", config_path="pkg://fishnet_train.conf", config_name="export")
def hydra_main(cfg: DictConfig) -> None:
    # Imported once the config has passed its check: torch takes seconds to load.
    from ..apps.exporter import run_export
    from .jobs import run_job

    run_job(cfg, "export.log", run_export, overridden_keys(), multi_process=False, log_to_stderr=True)


def main() -> None:
    run_app("export", hydra_main)


if __name__ == "__main__":
    main()
