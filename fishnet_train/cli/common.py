"""What the command-line apps share before the job starts: run directories and the config check.

Nothing here imports torch, so a mistake in the config is answered in a fraction of a second.
"""
from __future__ import annotations

import os
import sys
from datetime import datetime

from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from ..config import Options, register_configs, to_options, validate
from ..engine.launch_env import env_ranks
from ..errors import USER_ERROR_EXIT_CODE, UserError


def run_dir_name(base: str) -> str:
    """``base/<id>``: the SLURM job or torchrun run id when there is one, so that every rank
    and every restart of the job lands in the same directory; else a timestamp. Ranks other
    than 0 get ".": they learn rank 0's directory after joining the process group."""
    ranks = env_ranks()
    if ranks is not None and ranks[0] != 0:
        return "."
    if os.environ.get("SLURM_JOB_ID"):
        name = f"slurm-{os.environ['SLURM_JOB_ID']}"
        if os.environ.get("SLURM_ARRAY_TASK_ID"):
            name += f"-{os.environ['SLURM_ARRAY_TASK_ID']}"
    elif os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none":
        name = f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}"
    else:
        name = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return os.path.join(base, name)


def hydra_subdir(name: str) -> str | None:
    """Where Hydra keeps its own record of the run: rank 0 alone writes it."""
    ranks = env_ranks()
    return None if ranks is not None and ranks[0] != 0 else name


def prepare_hydra(config_name: str) -> None:
    """Register schemas and resolvers, then check the command line's config."""
    register_configs()
    OmegaConf.register_new_resolver("fishnet_run_dir", run_dir_name, replace=True)
    OmegaConf.register_new_resolver("fishnet_hydra_subdir", hydra_subdir, replace=True)
    check_overrides(config_name, sys.argv[1:])


def check_overrides(config_name: str, args: list[str]) -> None:
    """Compose and validate the config before Hydra starts the job, so that any mistake in it is
    one line and exit 2, not Hydra's multi-line report. Flags (--help, -m, --cfg) are left to Hydra."""
    if any(a.startswith("-") for a in args) or os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    overrides = [a for a in args if not a.lstrip("+~").startswith("hydra")]
    try:
        with initialize_config_module("fishnet_train.conf", version_base="1.3"):
            validate(to_options(compose(config_name, overrides=overrides)))
    except (HydraException, OmegaConfBaseException, UserError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def one_line(error: BaseException) -> str:
    """A composition error as one line, from the fields of the exception Hydra or OmegaConf raised."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, MissingConfigException) and error.options:
        group = os.path.dirname(error.missing_cfg_file or "")
        return f"no {error.missing_cfg_file!r} config; choose {group}= one of {', '.join(error.options)}"
    cause = error
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__ or cause.__context__
    head = str(error).splitlines()[0].rstrip(".")
    if cause is None:
        return head
    key = getattr(cause, "full_key", None)
    if isinstance(cause, MissingMandatoryValue) and key:
        return f"{key} is required: set {key}=..."
    detail = str(getattr(cause, "msg", None) or cause).splitlines()[0].rstrip(".")
    if key and key not in detail and key not in head:
        detail = f"{key}: {detail}"
    line = detail if cause is error else f"{head}: {detail}"
    return f"{line} (see --help for the keys and groups)"


def typed_options(cfg: DictConfig) -> Options:
    """The composed config converted once into its typed, frozen options, and validated."""
    try:
        options = to_options(cfg)
    except OmegaConfBaseException as e:
        raise UserError(one_line(e)) from None
    validate(options)
    return options
