#!/usr/bin/env bash
# Exact search at 100 000 passages on this machine: the CUAD retrieval set's test benchmark
# (41 questions, the 6 500 200-word passages of the 109 test contracts, their judgements) with
# distractor passages added from the train contracts (32-word windows, never relevant) up to
# PASSAGES in all; `bertkit evaluate --queries` with the corpus's vectors in memory and with
# them written to an .npy file and searched memory-mapped (--corpus-vectors); wall time and peak
# RSS of each (GNU time), and the search measures (the distractors can only push relevant
# passages down).
#   PASSAGES=100000 bash bench/search_scale.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.models/all-MiniLM-L6-v2}
out=bench/out/search-scale
mkdir -p "$out"
python3 scripts/cuad_retrieval.py ../shared/data/cuad "$out/data" >/dev/null
python3 - "$out/data" "$out/bench" "${PASSAGES:-100000}" <<'PY'
import json, os, shutil, sys
data, bench, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(bench, exist_ok=True)
for name in ("queries.jsonl", "qrels.tsv"):
    shutil.copy(f"{data}/test/{name}", f"{bench}/{name}")
corpus = open(f"{data}/test/corpus.jsonl").read().splitlines()
words = " ".join(open(f"{data}/dapt.txt").read().split()).split()
need = total - len(corpus)
with open(f"{bench}/corpus.jsonl", "w") as f:
    f.write("\n".join(corpus) + "\n")
    for i in range(need):
        at = (i * 32) % max(1, len(words) - 32)
        f.write(json.dumps({"_id": f"x{i}", "text": " ".join(words[at:at + 32])}) + "\n")
print(f"{len(corpus)} test passages + {need} distractors", file=sys.stderr)
PY
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
b="$out/bench"
for mode in memory mapped; do
    extra=(); [ "$mode" = mapped ] && extra=(--corpus-vectors "$out/corpus.npy")
    /usr/bin/time -f "%e %M" -o "$out/$mode.time" target/release/bertkit evaluate --model "$model" \
        --queries "$b/queries.jsonl" --corpus "$b/corpus.jsonl" --qrels "$b/qrels.tsv" --max-len 128 \
        --threads 2 --precision fp32 --json "$out/$mode.json" "${extra[@]}" >/dev/null 2>"$out/$mode.log"
    python3 - "$out/$mode.json" "$out/$mode.time" "$mode" "$b/corpus.jsonl" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
seconds, kb = open(sys.argv[2]).read().split()[-2:]
passages = sum(1 for _ in open(sys.argv[4]))
print(json.dumps({"vectors": sys.argv[3], "passages": passages, "seconds": float(seconds),
                  "peak_rss_mb": round(int(kb) / 1024), **{k: m["metrics"][k] for k in ("ndcg_at_10", "mrr_at_10", "recall_at_100")}}))
PY
done
