"""Process-group plumbing that can be checked in one process: the SLURM master address and port, GPU guards."""
import shutil

import pytest
import torch

from fishnet_train.errors import UserError
from fishnet_train.processes import distributed
from fishnet_train.processes.distributed import first_host, local_process_count, resolve_device, slurm_port


@pytest.mark.parametrize("nodes, first", [
    ("gpu[01-02]-ib", "gpu01-ib"), ("node[07,01-04]", "node07"), ("a,b", "a"), ("n1", "n1"),
    ("rack[1-2]n[3-4],x", "rack1n3"), ("gpu[3,5]-ib,cpu[1-2]", "gpu3-ib"),
])
def test_the_first_host_of_a_node_list(nodes, first, monkeypatch):
    monkeypatch.setattr(distributed.shutil, "which", lambda name: None)  # the hand reader
    assert first_host(nodes) == first


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="SLURM's scontrol is not installed")
def test_scontrol_reads_the_node_list_where_it_is_installed():
    assert first_host("gpu[01-02]-ib") == "gpu01-ib"


@pytest.mark.parametrize("job", ["0", "12345", "99999999"])
def test_the_store_port_is_below_the_ephemeral_range(job, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", job)
    assert 1024 < slurm_port() < 32768


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_more_local_processes_than_gpus_is_one_line(two_gpus):
    with pytest.raises(UserError, match=r"^3 processes on this node but 2 GPUs: two would share a GPU; .*"
                                        r"--ntasks-per-node=2"):
        resolve_device("auto", local_rank=2, local_processes=3)


def test_more_devices_than_gpus_is_refused_before_launching(two_gpus):
    with pytest.raises(UserError, match=r"^trainer.devices=4 but this machine has 2 GPUs"):
        local_process_count("4", "auto")
    assert local_process_count("auto", "auto") == 2 and local_process_count("4", "cpu") == 4
