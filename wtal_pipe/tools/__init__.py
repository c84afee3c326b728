"""Tools around the pipeline: ``wtal bench`` (``bench.py``, ``bench_sections.py``), ``wtal demo`` (``demo.py``),
generated clips (``synthetic.py``) and the THUMOS- / ActivityNet-shaped benchmark sets (``shaped.py``)."""
