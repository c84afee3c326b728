"""``wtal annotate``: the local web page for background clicks and reviewing detections (needs ``[web]``)."""
