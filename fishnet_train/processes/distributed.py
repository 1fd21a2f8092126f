"""Process groups from torchrun, SLURM or our own local launch; rank-0-only effects."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..errors import UserError
from .launch_env import env_ranks, local_processes


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    store: Any = field(default=None, compare=False, repr=False)  # the group's dist.Store

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``scontrol show hostnames`` where SLURM's tools are
    installed, else read by hand (``gpu[01-02]-ib,cpu3`` -> ``gpu01-ib``)."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    head = re.match(r"(?:[^,\[]|\[[^\]]*\])+", nodelist)  # up to the first comma outside brackets
    return re.sub(r"\[([^],-]+)[^]]*\]", r"\1", head.group(0) if head else nodelist)


def slurm_port() -> int:
    """A port from the job id, the same on every node of the job, below Linux's ephemeral range
    (32768-60999), where a port the store needs could already be some connection's."""
    return 20000 + int(os.environ.get("SLURM_JOB_ID", "0") or 0) % 12000


def resolve_device(preference: str, local_rank: int = 0, local_processes: int = 1) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device=cuda but no CUDA GPU is visible; use trainer.device=cpu or auto")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        count = torch.cuda.device_count()
        # One visible GPU per process is SLURM's per-task binding (--gpus-per-task=1); several
        # visible GPUs and more processes than GPUs would put two processes on one GPU.
        if count > 1 and local_processes > count:
            raise UserError(f"{local_processes} processes on this node but {count} GPUs: two would share a GPU; "
                            f"start one process per GPU (srun --ntasks-per-node={count}, torchrun "
                            f"--nproc-per-node={count}, trainer.devices={count}) or set trainer.device=cpu")
        torch.cuda.set_device(local_rank % count)
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(device_preference: str) -> DistInfo:
    """Join the process group the environment describes (NCCL on GPUs, gloo on the CPU)."""
    ranks = env_ranks()
    if ranks is None:
        return DistInfo(device=resolve_device(device_preference))
    rank, world, local_rank = ranks
    device = resolve_device(device_preference, local_rank, local_processes())
    store = None
    if world > 1 and not dist.is_initialized():
        store = _join_process_group(rank, world, "nccl" if device.type == "cuda" else "gloo",
                                    device if device.type == "cuda" else None)
        if device.type == "cuda":
            check_one_gpu_per_process(device)
    return DistInfo(rank, world, local_rank, device, store)


def _join_process_group(rank: int, world: int, backend: str, device_id: torch.device | None) -> dist.Store:
    """The group and its store (kept: peers.PeerWatch reads a failed rank's message from it)."""
    timeout = timedelta(minutes=30)
    if "TORCHELASTIC_RESTART_COUNT" in os.environ:
        # The elastic agent's store outlives a worker restart and still holds the last
        # attempt's addresses (pytorch/pytorch#167288): a namespace per start of the group keeps
        # a restarted group from connecting to processes that are gone. Every rank of a group is
        # started as often as the others; the agents' restart counts are not equal (an agent that
        # restarts for another node's failure does not count it).
        store, _, _ = next(dist.rendezvous("env://", rank, world, timeout=timeout))
        start = store.add(f"fishnet/starts/{world}/{rank}", 1)
        store = dist.PrefixStore(f"fishnet/start_{world}_{start}", store)
    else:  # a user's own launcher (MASTER_ADDR), or srun: the first node of the step hosts the store
        nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1")
        host = os.environ.get("MASTER_ADDR") or first_host(nodes)
        port = int(os.environ.get("MASTER_PORT") or slurm_port())
        store = dist.TCPStore(host, port, world, is_master=rank == 0, timeout=timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout,
                            device_id=device_id)
    return store


def check_one_gpu_per_process(device: torch.device) -> None:
    """Refuse two processes on one GPU (visible to both, e.g. srun without per-task binding)."""
    uuid = str(getattr(torch.cuda.get_device_properties(device), "uuid", device.index))
    owners = all_gather_objects((socket.gethostname(), uuid))
    if len(set(owners)) < len(owners):
        raise UserError(f"{len(owners) - len(set(owners)) + 1} processes share GPU {uuid} on {owners[0][0]}: "
                        "give each task its own GPU (srun --gpus-per-task=1, or one task per GPU)")


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


# How long the launcher waits for its workers to save and exit after a stop signal before it
# kills them: torch's default, 30 s, is too short for a FishNet-201 checkpoint on a network filesystem.
SHUTDOWN_TIMEOUT_S = 300
# The signals the launcher passes on to its workers: torch's four, and SLURM's and submitit's warnings.
FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2"


def local_process_count(devices: str, device_preference: str) -> int:
    """How many processes ``trainer.devices`` asks this machine to start."""
    gpus = torch.cuda.device_count() if device_preference != "cpu" and torch.cuda.is_available() else 0
    if devices == "auto":
        return gpus or 1
    if gpus and int(devices) > gpus:
        raise UserError(f"trainer.devices={devices} but this machine has {gpus} GPUs: one process per GPU; "
                        f"set trainer.devices={gpus} or less (or trainer.device=cpu)")
    return int(devices)


def launch_local(nprocs: int, entrypoint: Callable[..., Any], *args: Any, run_id: str = "fishnet") -> None:
    """Start ``nprocs`` workers on this machine with torch's elastic launcher, which passes
    ``FORWARDED_SIGNALS`` on to them and gives them ``SHUTDOWN_TIMEOUT_S`` to stop.

    The workers report their own errors (``runtime.setup_logging`` mutes the launcher's).
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # Both settings are newer than torch 2.4; without them the launcher dies of SIGUSR1/2 itself.
    known = {f.name for f in dataclasses.fields(LaunchConfig)}
    extra: dict[str, Any] = {"signals_to_handle": FORWARDED_SIGNALS, "shutdown_timeout": SHUTDOWN_TIMEOUT_S}
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nprocs, run_id=run_id,
        rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.5,
        # Each rank a new interpreter, whatever the launcher's default: a forked child cannot use CUDA
        # once its parent has, and the ranks have nothing to inherit from the launching process.
        start_method="spawn",
        **{k: v for k, v in extra.items() if k in known},
    )
    elastic_launch(config, entrypoint)(*args)
