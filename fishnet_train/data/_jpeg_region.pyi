from typing import Any

LIBJPEG_TURBO_VERSION_NUMBER: int

# data: the JPEG's bytes; out: a writable buffer of at least height * width * 3 bytes.
def decode_box(data: bytes, out: Any, left: int, top: int, width: int, height: int, num: int, denom: int,
               fast: bool, /) -> None: ...
