#!/usr/bin/env python3
"""Where a cairn run spent its time: per step kind, the sum and max of the
journaled `ms` (steps of different hosts overlap), and the slowest steps.
Usage: bench/steps.py STATE_DIR/runs/RUN_ID/journal.jsonl"""
import json, sys
from collections import defaultdict
kinds = defaultdict(list)
steps = []
for line in open(sys.argv[1]):
    rec = json.loads(line.split(' ', 1)[1])
    if rec.get('t') == 'done':
        kinds[rec['kind']].append(rec.get('ms', 0))
        steps.append((rec.get('ms', 0), rec['key'], rec['kind']))
print(f"{'kind':28} {'n':>3} {'sum ms':>8} {'max ms':>8}")
for k, v in sorted(kinds.items(), key=lambda kv: -max(kv[1])):
    print(f"{k:28} {len(v):3} {sum(v):8} {max(v):8}")
print("slowest:", ", ".join(f"{k} {kind} {ms} ms" for ms, k, kind in sorted(steps, reverse=True)[:5]))
