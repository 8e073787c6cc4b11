#!/usr/bin/env python3
"""Where a local stack's threads spend a run: on a core, or runnable and waiting for one.

    python3 bench/sched_sample.py sample STACK_JSON OUT.jsonl [SECONDS]
    python3 bench/sched_sample.py summary OUT.jsonl [SLICE_SECONDS] [START_SECONDS] [threads]

`sample` reads /proc/PID/task/*/schedstat (time on a core, time waiting on a run queue, in ns) of
every service in STACK_JSON (anchorctl's run/stack.json) every 50 ms until the services exit or
SECONDS (default 300) pass, one JSON line per sample. `summary` prints, per slice of the run
(default 0.5 s, from START_SECONDS after the first sample on: the start of the run to look at),
each service's cores spent running and waiting: a service that waits about as long as it runs is
short of cores, one that does neither has no work. With `threads`, each service's thread names
(libs/common/thread_name.h) apart. `SCHED=FILE bash bench/pipeline_bench.sh` runs
it through the Merkle run (bench/RESULTS.md, "Issue 11, session 22").
"""
import collections
import glob
import json
import os
import sys
import time


def sample(stack_json, out_path, seconds):
    pids = json.load(open(stack_json))["pids"]
    t_end = time.time() + seconds
    with open(out_path, "w") as out:
        while time.time() < t_end:
            rec = {"t": time.time()}
            for name, pid in pids.items():
                for task in glob.glob(f"/proc/{pid}/task/*"):
                    try:
                        run, wait, _ = open(task + "/schedstat").read().split()
                        comm = open(task + "/comm").read().strip()
                    except (OSError, ValueError):
                        continue  # the thread ended meanwhile
                    # service/thread name/tid: `summary ... threads` groups by the first two.
                    rec[f"{name}/{comm}/{os.path.basename(task)}"] = [int(run), int(wait)]
            if len(rec) == 1:
                break  # every service is gone
            out.write(json.dumps(rec) + "\n")
            time.sleep(0.05)


def summary(path, width, start, by_thread=False):
    recs = [json.loads(line) for line in open(path)]
    if len(recs) < 2:
        sys.exit("summary: fewer than two samples")
    t0 = recs[0]["t"] + start
    slices = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    for a, b in zip(recs, recs[1:]):
        if a["t"] < t0:
            continue
        n = int((a["t"] - t0) / width)
        for key, value in b.items():
            if key == "t" or key not in a:
                continue  # a thread seen once has no interval
            run, wait = value
            parts = key.split("/")
            # by_thread: "service/thread name" (older samples, keyed service/tid, have no name).
            service = "/".join(parts[:2]) if by_thread and len(parts) == 3 else parts[0]
            slices[n][service][0] += run - a[key][0]
            slices[n][service][1] += wait - a[key][1]
    services = sorted({s for per in slices.values() for s in per})
    print("| seconds | " + " | ".join(f"{s}: ran / waited (cores)" for s in services) + " |")
    print("|---" * (len(services) + 1) + "|")
    for n in sorted(slices):
        cells = []
        for s in services:
            run, wait = slices[n][s]
            cells.append(f"{run / (width * 1e9):.2f} / {wait / (width * 1e9):.2f}")
        print(f"| {n * width:.1f}-{(n + 1) * width:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "sample":
        sample(sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 300)
    elif len(sys.argv) >= 3 and sys.argv[1] == "summary":
        summary(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.5,
                float(sys.argv[4]) if len(sys.argv) > 4 else 0.0,
                len(sys.argv) > 5 and sys.argv[5] == "threads")
    else:
        sys.exit(__doc__)
