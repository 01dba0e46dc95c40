#!/usr/bin/env bash
# Fetch benchmark data into $ETO_DATA_DIR with the benchmarks' own download steps.
#   scripts/download_data.sh alfworld   # ALFWorld json_2.1.1 games + PDDL logic (alfworld-download)
#   scripts/download_data.sh webshop    # WebShop catalog + human instructions (gdown, as WebShop's setup.sh)
# ScienceWorld needs nothing: its engine ships in the `scienceworld` package.
set -euo pipefail
: "${ETO_DATA_DIR:?set ETO_DATA_DIR to the folder that should hold alfworld/ and webshop/}"
PY="${PY:-.venv/bin/python}"
case "${1:-}" in
  alfworld)
    # alfworld<=0.3.5 ships the downloader for the json_2.1.1 release (the files ETO uses);
    # --no-deps keeps its training dependencies out of the environment.
    "$PY" -m pip install -q --no-deps "alfworld==0.3.5" requests
    mkdir -p "$ETO_DATA_DIR/alfworld"
    ALFWORLD_DATA="$ETO_DATA_DIR/alfworld" "$(dirname "$PY")/alfworld-download"
    ;;
  webshop)
    "$PY" -m pip install -q gdown
    mkdir -p "$ETO_DATA_DIR/webshop/data"
    cd "$ETO_DATA_DIR/webshop/data"
    G="$(dirname "$(command -v "$PY" || echo "$PY")")/gdown"
    "$G" "https://drive.google.com/uc?id=1A2whVgOO0euk5O13n2iYDM0bQRkkRduB"  # items_shuffle.json
    "$G" "https://drive.google.com/uc?id=1s2j6NgHljiZzQNL3veZaAiyW_qDEgBNi"  # items_ins_v2.json
    "$G" "https://drive.google.com/uc?id=14Kb5SPBk_jfdLZ_CDBNitW98QLDlKR5O"  # items_human_ins.json
    ;;
  *)
    echo "usage: $0 alfworld|webshop" >&2
    exit 2
    ;;
esac
