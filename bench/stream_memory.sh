#!/usr/bin/env bash
# Streaming replay keeps its memory bounded: replay a ~0.55 GB and a ~1.1 GB generated Mooncake JSONL at the same
# capacity and compare peak RSS (it should not grow with the trace). Needs ~2 GB free in $TMPDIR (default /tmp).
#   bash bench/stream_memory.sh [capacity_blocks]
set -euo pipefail
dir="${TMPDIR:-/tmp}/cachesim-stream"
capacity="${1:-1M}"
mkdir -p "$dir"
here="$(cd "$(dirname "$0")" && pwd)"
[ -s "$dir/big.jsonl" ] || python "$here/gen_mooncake.py" "$dir/big.jsonl" 1.1G
head -c 550000000 "$dir/big.jsonl" | head -n -1 > "$dir/half.jsonl"
for f in "$dir/half.jsonl" "$dir/big.jsonl"; do
  bytes=$(stat -c %s "$f")
  /usr/bin/time -f "%e s, peak RSS %M KB" -o "$dir/time.txt" \
    cachesim replay "$f" --capacity "$capacity" --no-progress --json "$dir/out.json" > /dev/null
  requests=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['summary']['requests_seen'])" "$dir/out.json")
  echo "$(basename "$f"): $bytes bytes, $requests requests, capacity $capacity blocks: $(cat "$dir/time.txt")"
done
