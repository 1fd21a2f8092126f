"""What the launchers' environment says: ranks only from srun's own tasks, threads from the cores each process has."""
import os

import pytest

from fishnet_train.processes.launch_env import cpu_threads, env_ranks, expand_counts, local_processes

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
                      "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE", "SLURM_NODEID",
                      "SLURM_CPUS_PER_TASK")


@pytest.fixture
def env(monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for k, v in values.items():
            monkeypatch.setenv(k, v)
    return set_env


def test_a_multi_task_batch_shell_is_one_process_not_rank_0_of_many(env):
    env(SLURM_PROCID="0", SLURM_NTASKS="8", SLURM_LOCALID="0")  # sbatch --ntasks=8, no srun
    assert env_ranks() is None


def test_srun_tasks_are_ranks_of_the_step(env):
    env(SLURM_PROCID="3", SLURM_NTASKS="8", SLURM_STEP_NUM_TASKS="4", SLURM_LOCALID="1")
    assert env_ranks() == (3, 4, 1)  # the step's tasks, not the allocation's


def test_torchrun_variables_win_over_slurm_ones(env):
    env(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", SLURM_PROCID="3", SLURM_STEP_NUM_TASKS="4")  # torchrun in srun
    assert env_ranks() == (1, 2, 1)


@pytest.mark.parametrize("spec, counts", [("2(x3),1", [2, 2, 2, 1]), ("8", [8]), ("4,4", [4, 4]), ("junk", [])])
def test_slurm_per_node_counts_expand(spec, counts):
    assert expand_counts(spec) == counts


def test_cpus_per_task_sets_a_srun_task_threads(env):
    env(SLURM_PROCID="0", SLURM_STEP_NUM_TASKS="2", SLURM_STEP_TASKS_PER_NODE="2", SLURM_CPUS_PER_TASK="3")
    assert cpu_threads() == 3


def test_without_cpus_per_task_the_cores_are_shared_among_the_node_tasks(env):
    env(SLURM_PROCID="1", SLURM_STEP_NUM_TASKS="3", SLURM_STEP_TASKS_PER_NODE="2,1", SLURM_NODEID="0")
    assert local_processes() == 2
    assert cpu_threads() == max(1, len(os.sched_getaffinity(0)) // 2)


def test_torchrun_workers_share_the_cores_even_inside_a_slurm_task(env):
    env(RANK="0", WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", SLURM_CPUS_PER_TASK="8")  # torchrun run by one srun task
    assert cpu_threads() == max(1, len(os.sched_getaffinity(0)) // 2)


def test_a_lone_process_keeps_torch_threads(env):
    assert cpu_threads() is None
