#!/usr/bin/env bash
# From a fresh machine to an answer on a photo, as the README's first screen promises: a clean clone of this
# checkout's HEAD, a new virtual environment, pip without its cache, the README's install line, then
# `attr2gender predict PHOTO` with the model that ships in the package (twice: the second shows the warm cost).
#
#     bash benchmarks/fresh_machine.sh [PHOTO]      # default: the first wild_dev photo beside the checkout
#
# Writes benchmarks/results/fresh_machine.md. Packages come from wherever pip is configured to read them (on
# the project's machines, a local mirror): a network download of torch adds what the connection takes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
photo=${1:-}
if [ -z "$photo" ]; then
    wild="$repo/../shared/wild_dev"
    photo="$wild/$(sed -n 2p "$wild/labels.csv" | cut -d, -f1)"
fi
[ -f "$photo" ] || { echo "error: no photo at $photo; give one: bash benchmarks/fresh_machine.sh PHOTO" >&2; exit 2; }
work=$(mktemp -d)
git clone -q "$repo" "$work/attr2gender" && cd "$work/attr2gender"
t0=$(date +%s.%N)
python3 -m venv .venv && . .venv/bin/activate
python -m pip install -q --no-cache-dir --upgrade pip 2>/dev/null
pip install -q --no-cache-dir -e ".[dev,onnx,spark]" 2>/dev/null
t1=$(date +%s.%N)
attr2gender predict "$photo" --quiet > "$work/first.csv"
t2=$(date +%s.%N)
attr2gender predict "$photo" --quiet > /dev/null
t3=$(date +%s.%N)
size=$(du -sh .venv | cut -f1)
line=$(python - "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
t0, t1, t2, t3 = map(float, sys.argv[1:])
print(f"| {t2 - t0:.0f} s | {t1 - t0:.0f} s | {t2 - t1:.1f} s | {t3 - t2:.1f} s |")
PY
)
commit=$(git rev-parse --short HEAD)
cat > "$repo/benchmarks/results/fresh_machine.md" <<MD
# From a fresh machine to an answer on a photo

$(date -u +%Y-%m-%d), commit $commit, $(nproc) cores; a clean clone, a new venv, pip's cache off, packages from pip's
configured sources; venv $size. One photo: $(basename "$photo").

| fresh machine to the answer | install | first \`attr2gender predict photo.jpg\` | again (warm disk) |
|---|---|---|---|
$line
MD
cat "$repo/benchmarks/results/fresh_machine.md"
rm -rf "$work"
