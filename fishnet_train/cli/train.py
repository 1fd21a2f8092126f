"""``fishnet-train``: check the config, then train (in N local processes if asked)."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .common import run_app


@hydra.main(version_base="1.3", config_path="pkg://fishnet_train.conf", config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    # Imported once the config has passed its check: torch takes seconds to load.
    from ..training.build import check_inputs
    from ..training.trainer import train
    from .jobs import run_job

    run_job(cfg, "train.log", train, precheck=check_inputs)


def main() -> None:
    run_app("train", hydra_main)


if __name__ == "__main__":
    main()
