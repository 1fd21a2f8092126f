"""``fishnet-eval``: evaluate a checkpoint with the published protocol."""
from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from .common import run_app


def overridden_keys() -> list[str]:
    """Keys given on the command line: they win over the sizes a checkpoint carries."""
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return [o.key_or_group for o in overrides]


@hydra.main(version_base="1.3", config_path="pkg://fishnet_train.conf", config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    # Imported once the config has passed its check: torch takes seconds to load.
    from ..engine.evaluator import check_eval_inputs, run_eval
    from .jobs import run_job

    run_job(cfg, "eval.log", run_eval, overridden_keys(), precheck=check_eval_inputs)


def main() -> None:
    run_app("eval", hydra_main)


if __name__ == "__main__":
    main()
