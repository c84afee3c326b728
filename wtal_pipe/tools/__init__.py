"""Tools around the pipeline: ``wtal bench`` (``bench.py``; ``bench_sections.py`` and ``bench_report.py``, importable
alone), ``wtal demo`` (``demo.py``), generated clips (``synthetic.py``) and the THUMOS- / ActivityNet-shaped benchmark
sets (``shaped.py``)."""
