"""Evaluation: ActivityNet-protocol mAP (``evaluate.py``), testing a run on a subset (``testing.py``), reports
over seeds (``report.py``) and figures (``plot.py``)."""
