"""The processes of a job: process groups and devices, the launchers' environments (torchrun, srun,
Hydra's submitit), stop signals, one failing rank ending the others, one run per directory, and the
process-wide settings (seeds, threads, allocator, logging)."""
