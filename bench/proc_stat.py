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


def thread_cpu(pid):
    """{thread name: CPU seconds} of `pid`'s live threads, summed over threads of one name (the
    services name theirs: libs/common/thread_name.h). A thread that ended is in cpu_and_faults's
    total but no longer here."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                text = f.read()
        except OSError:
            continue  # the thread ended meanwhile
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / _TICK
    return out
