"""The checkpoint converter, from a source checkout: the same as the ``fishnet-convert-checkpoint`` console script.

    python tools/convert_checkpoint.py IN OUT --to ours|released [--trust]
"""
from fishnet_train.cli.convert import main

if __name__ == "__main__":
    main()
