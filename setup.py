"""The optional C extension; everything else is in pyproject.toml.

fishnet_train/data/_jpeg_region.c decodes the training crop's rectangle of a JPEG with libjpeg-turbo.
It needs a C compiler and libjpeg-turbo's headers (Debian: gcc libjpeg62-turbo-dev); where either is
missing the build goes on without it and the training crop decodes the whole image (data/jpeg_region.py).
"""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("fishnet_train.data._jpeg_region", ["fishnet_train/data/_jpeg_region.c"], libraries=["jpeg"],
              optional=True),
])
