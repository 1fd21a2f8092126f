"""``python -m fishnet_train.data.decoding.status``: one line, whether the region decoder was built and, if not,
what its build lacked and the packages to install (``make install`` prints it)."""
from .jpeg_region import build_status

if __name__ == "__main__":
    print(build_status())
