"""Inference: a model's scores -> proposals -> detections (``localize.py``, pure NumPy), the one detection shape
(``detections.py``: :class:`DetectionTable`), and the glue from a run and DATA_DIR or raw clips to detections
(``pipeline.py``)."""
