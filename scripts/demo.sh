#!/usr/bin/env bash
# A short tour on all-MiniLM-L6-v2 (run scripts/setup.sh first).
set -euo pipefail
cd "$(dirname "$0")/.."
bk=target/release/bertkit
model=.models/all-MiniLM-L6-v2

echo "== bertkit inspect $model"
$bk inspect "$model"

echo
echo "== bertkit embed: cosine similarity of sentence vectors (mean pooling, unit length)"
$bk embed "$model" --pooling mean --normalize \
    --text "The lessee shall maintain the premises." \
    --text "The tenant must keep the property in good repair." \
    --text "I love this movie, it's fantastic!" |
python3 -c '
import json, sys
rows = json.load(sys.stdin)["embeddings"]
v = [r["vector"] for r in rows]
dot = lambda a, b: sum(x * y for x, y in zip(a, b))
for i in range(len(v)):
    for j in range(i + 1, len(v)):
        a, b = rows[i]["text"], rows[j]["text"]
        print(f"  {dot(v[i], v[j]):+.3f}  {a!r} ~ {b!r}")
'
