"""Training: one trainer for every method (``train.py``), the held-out monitor that keeps the best step
(``monitor.py``), and ``wtal refine``'s rounds of self-training on pseudo labels (``refine.py``, ``pseudo.py``)."""
