"""``fishnet-train``: parse the config, then train (in N local processes if asked)."""
from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..config import validate_config
from ..data import find_splits
from ..engine.distributed import env_ranks, launch_local, local_process_count
from ..engine.reporting import setup_logging
from ..engine.trainer import train
from .common import exit_codes, launch_failed, prepare_hydra


def worker(cfg_yaml: str, run_dir: str) -> None:
    """One process of a local multi-process run (started by the elastic launcher)."""
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(os.path.join(run_dir, "train.log") if rank == 0 else None)
    with exit_codes():
        train(OmegaConf.create(cfg_yaml), run_dir)


@hydra.main(version_base="1.3", config_path="pkg://fishnet_train.conf", config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    ranks = env_ranks()
    setup_logging(os.path.join(run_dir, "train.log") if ranks is None or ranks[0] == 0 else None)
    with exit_codes():
        validate_config(cfg)
        nprocs = local_process_count(str(cfg.trainer.devices), cfg.trainer.device)
        if nprocs > 1 and ranks is None:
            find_splits(cfg.data.root)  # fail on a bad path here, not in N workers
            try:
                launch_local(nprocs, worker, OmegaConf.to_yaml(cfg), run_dir)
            except Exception as e:  # the workers already printed their own errors
                sys.exit(launch_failed(e))
        else:
            train(cfg, run_dir)


def main() -> None:
    prepare_hydra("train")
    hydra_main()


if __name__ == "__main__":
    main()
