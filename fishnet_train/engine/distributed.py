"""Process groups from torchrun, SLURM or our own local launch; rank-0-only effects."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..errors import UserError
from .launch_env import env_ranks


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _slurm_master_addr() -> str:
    nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1")
    # "node[01-04,07]" -> "node01"; "a,b" -> "a"; scontrol is not needed for the first host.
    head = nodes.split(",")[0]
    if "[" in head:
        prefix, rest = head.split("[", 1)
        head = prefix + rest.split("-")[0].split(",")[0].rstrip("]")
    return head


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device=cuda but no CUDA GPU is visible; use trainer.device=cpu or auto")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(device_preference: str) -> DistInfo:
    """Join the process group the environment describes (NCCL on GPUs, gloo on the CPU)."""
    ranks = env_ranks()
    if ranks is None:
        return DistInfo(device=resolve_device(device_preference))
    rank, world, local_rank = ranks
    device = resolve_device(device_preference, local_rank)
    if world > 1 and not dist.is_initialized():
        _join_process_group(rank, world, "nccl" if device.type == "cuda" else "gloo",
                            device if device.type == "cuda" else None)
    return DistInfo(rank, world, local_rank, device)


def _join_process_group(rank: int, world: int, backend: str, device_id: torch.device | None) -> None:
    timeout = timedelta(minutes=30)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is not None:
        # The elastic agent's store outlives a worker restart and still holds the last
        # attempt's addresses (pytorch/pytorch#167288); a namespace per attempt keeps
        # the restarted group from connecting to processes that are gone.
        store, _, _ = next(dist.rendezvous("env://", rank, world, timeout=timeout))
        store = dist.PrefixStore(f"fishnet/attempt_{attempt}", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout,
                                device_id=device_id)
        return
    if "MASTER_ADDR" in os.environ:  # torchrun, or a user's own launcher
        init_method = "env://"
    else:  # srun: the first node of the step hosts the store
        port = os.environ.get("MASTER_PORT") or str(29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000)
        init_method = f"tcp://{_slurm_master_addr()}:{port}"
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world, timeout=timeout,
                            device_id=device_id)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    all_reduce_sum(tensor)
    return tensor / (dist.get_world_size() if dist.is_initialized() else 1)


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_objects(obj: Any) -> list[Any]:
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BN statistics) in ``module`` on every rank, in place."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def local_process_count(devices: str, device_preference: str) -> int:
    """How many processes ``trainer.devices`` asks this machine to start."""
    if devices != "auto":
        return int(devices)
    if device_preference != "cpu" and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1


def launch_local(nprocs: int, entrypoint: Callable[..., Any], *args: Any, run_id: str = "fishnet") -> None:
    """Start ``nprocs`` workers on this machine with torch's elastic launcher.

    The workers report their own errors (``runtime.setup_logging`` mutes the launcher's).
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nprocs, run_id=run_id,
        rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.5,
    )
    elastic_launch(config, entrypoint)(*args)
