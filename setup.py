"""The optional C extension; everything else is in pyproject.toml.

fishnet_train/data/decoding/_jpeg_region.c decodes the training crop's rectangle of a JPEG with libjpeg-turbo, and
rewrites JPEGs with a restart marker after every MCU (_jpeg_transcode.c), which lets it cut the rectangle's
data out of the file (_jpeg_segments.c). It needs a C compiler and libjpeg-turbo's headers (Debian: gcc
libjpeg62-turbo-dev); where either is missing the build goes on without it and the training crop decodes
the whole image (data/decoding/jpeg_region.py).
"""
from setuptools import Extension, setup

SOURCES = ["_jpeg_region.c", "_jpeg_segments.c", "_jpeg_transcode.c"]

FOLDER = "fishnet_train/data/decoding"
HEADERS = ["_jpeg_errors.h", "_jpeg_segments.h", "_jpeg_transcode.h"]

setup(ext_modules=[
    Extension("fishnet_train.data.decoding._jpeg_region", [f"{FOLDER}/{name}" for name in SOURCES],
              depends=[f"{FOLDER}/{name}" for name in HEADERS], libraries=["jpeg"], optional=True),
])
