#!/usr/bin/env bash
# THUMOS14 with the widely shared BaS-Net/UM I3D features and BackTAL's human background clicks.
#
#   bash examples/thumos14_bas_features.sh FEATURES_DIR CLICKS_CSV [DATA_DIR] [RUNS_DIR]
#
# FEATURES_DIR: the BaS-Net/UM release (features/{train,test}/{rgb,flow}/<vid>.npy and gt.json)
# CLICKS_CSV:   e.g. THUMOS14_Background-Click-Annotation_A1.txt from VividLe/BackTAL (data/THUMOS14/human_anns)
# Trains the four methods with their published settings (GPU recommended) and reports mAP at
# tIoU 0.1:0.7 (UM's table) and 0.1:0.9 (BaS-Net/BackTAL's), final checkpoints (no test-set selection).
set -euo pipefail
features=${1:?FEATURES_DIR}; clicks=${2:?CLICKS_CSV}; data=${3:-data/thumos14}; runs=${4:-runs/thumos14}

wtal import bas-thumos "$features" --data "$data"
wtal import clicks "$clicks" --data "$data"

for method in basnet um cmcs backtal; do
  wtal train --method "$method" --data "$data" --out "$runs/$method" --seed 0
  wtal test --run "$runs/$method" --data "$data" --subset test --out "$runs/$method/dets.json" --tiou 0.1:0.7:0.1
  wtal evaluate "$runs/$method/dets.json" --gt "$data/annotations.json" --subset test --tiou 0.1:0.9:0.1
done
