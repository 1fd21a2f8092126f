"""What ``fishnet-eval``, ``fishnet-predict`` and ``fishnet-export`` do beyond parsing, over a trained
model read back from its checkpoint (``trained_model``)."""
