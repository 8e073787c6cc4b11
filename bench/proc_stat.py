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
