"""``fishnet-predict``: top-k classes for an image, a folder or a glob, from a checkpoint."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .common import overridden_keys, run_app


@hydra.main(version_base="1.3", config_path="pkg://fishnet_train.conf", config_name="predict")
def hydra_main(cfg: DictConfig) -> None:
    # Imported once the config has passed its check: torch takes seconds to load.
    from ..apps.predictor import run_predict
    from .jobs import run_job

    run_job(cfg, "predict.log", run_predict, overridden_keys(), multi_process=False, log_to_stderr=True)


def main() -> None:
    run_app("predict", hydra_main)


if __name__ == "__main__":
    main()
