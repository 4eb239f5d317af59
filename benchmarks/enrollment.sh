#!/usr/bin/env bash
# Does enrolling real recordings help? Adds N clips per word from the calibration speakers of
# Speech Commands as `examples_audio` and evaluates on the held-out test speakers.
# Usage: bash benchmarks/enrollment.sh [MODEL]   (needs ../shared/data; ~3 min per N)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-default}"
out="$(mktemp -d)"
python - "$out" <<'PY'
import csv, random, sys
from pathlib import Path

import yaml

out = Path(sys.argv[1])
man = Path("benchmarks/manifests/speech_commands_calib.csv")
rows = [r for r in csv.DictReader(open(man)) if r["label"] != "unknown"]
random.Random(0).shuffle(rows)
routes = yaml.safe_load(open("benchmarks/manifests/speech_commands.yaml"))
for n in (0, 1, 3):
    new = {"threshold": routes["threshold"], "margin": routes["margin"], "routes": []}
    for r in routes["routes"]:
        clips = [str((man.parent / x["path"]).resolve()) for x in rows if x["label"] == r["name"]]
        new["routes"].append({**r, "examples_audio": clips[:n]})
    (out / f"enroll{n}.yaml").write_text(yaml.safe_dump(new, sort_keys=False))
PY
for n in 0 1 3; do
    voice-router eval --routes "$out/enroll$n.yaml" --model "$model" --index "$out/index" \
        --data benchmarks/manifests/speech_commands_test.csv --json 2>/dev/null |
        python -c "import json,sys; d=json.load(sys.stdin); print('clips per route: $n', 'top-1', d['top1_accuracy'])"
done
