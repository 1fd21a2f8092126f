"""``fishnet-train`` with this process's GPU memory capped, for a real out-of-memory error on any GPU.

    python capped_gpu_memory_train.py GIB [overrides...]
"""
import sys

import torch

from fishnet_train.cli.train import main

if __name__ == "__main__":
    gib = float(sys.argv.pop(1))
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total))
    main()
