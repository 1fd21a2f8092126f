"""Image files into pixels: any format through Pillow, JPEGs through libjpeg-turbo (``images``), the
training crop's rectangle alone through the optional C extension (``jpeg_region``, sources ``_jpeg_*.c``),
and the lossless rewrite that lets that extension cut a file to the rectangle (``restart_markers``)."""
