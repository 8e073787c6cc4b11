"""A process's CPU seconds (user + system) and minor page faults so far, from /proc/PID/stat.

Shared by the Python parts of the bench scripts. The name field (in parentheses) may hold
spaces, so the fields are counted from after its closing parenthesis.
"""
import os

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_and_faults(pid):
    """(CPU seconds, minor faults) of `pid`; raises OSError when it is gone."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK, int(fields[7])


def peak_rss(pid):
    """`pid`'s peak resident memory so far (VmHWM), in bytes; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def threads_of(pid):
    """{thread id: (name, CPU seconds)} of `pid`'s live threads."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                text = f.read()
        except OSError:
            continue  # the thread ended meanwhile
        fields = text.rsplit(")", 1)[1].split()
        out[task] = (text[text.index("(") + 1:text.rindex(")")],
                     (int(fields[11]) + int(fields[12])) / _TICK)
    return out


class ThreadTracker:
    """Each thread's CPU between the first sample and the last one it was seen in, summed by
    thread name per service (the services name their threads: libs/common/thread_name.h). A
    thread born after the first sample starts from 0; one that ends counts as last seen (up to one
    sample short), so a call's threads (the hasher's) are counted too."""

    def __init__(self):
        self._seen = {}  # (service, thread id) -> [name, first, last]
        self._sampled = False

    def sample(self, pids):
        for service, pid in pids.items():
            try:
                live = threads_of(pid)
            except OSError:
                continue  # the service is gone
            for tid, (name, cpu) in live.items():
                seen = self._seen.setdefault((service, tid),
                                             [name, cpu if not self._sampled else 0.0, cpu])
                seen[0], seen[2] = name, cpu
        self._sampled = True

    def by_name(self):
        out = {}
        for (service, _), (name, first, last) in self._seen.items():
            out.setdefault(service, {})
            out[service][name] = out[service].get(name, 0) + last - first
        return out


if __name__ == "__main__":
    # python3 bench/proc_stat.py threads STACK_JSON STOP_FILE: samples the stack's threads every
    # 50 ms until STOP_FILE exists (or 600 s), then prints ThreadTracker.by_name() as JSON.
    import json
    import sys
    import time
    _, mode, stack_json, stop_file = sys.argv
    assert mode == "threads", "usage: proc_stat.py threads STACK_JSON STOP_FILE"
    pids = json.load(open(stack_json))["pids"]
    tracker = ThreadTracker()
    t_end = time.time() + 600
    while time.time() < t_end:
        tracker.sample(pids)
        if os.path.exists(stop_file):
            tracker.sample(pids)
            break
        time.sleep(0.05)
    print(json.dumps(tracker.by_name()))
