"""Whether a process on this host is still running, and whether it is still the one we mean:
the journal lock asks it of a holder's pid, the sandbox of the servers it started.

A pid alone names a process only until it exits; the kernel then hands the number to the next
process that starts. So every question about "that process" also compares start times.
"""

from __future__ import annotations

import os

# psutil derives a start time from the boot time, which /proc gives in whole seconds: two
# readings of one process's start time may differ by up to a second.
START_TIME_SLACK = 1.0


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running; a zombie counts as dead."""
    if pid <= 0:
        # 0 and negatives address process groups in kill(2); no real process has them.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just belongs to another user
    except OverflowError:
        return False
    # A zombie has exited but its parent has not reaped it yet: it will never release a lock
    # or answer on a port, so it is as dead as a missing pid. Linux tells us cheaply;
    # elsewhere, assume alive.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    # The state follows the command name, which is in parentheses and may contain spaces.
    fields = stat.rpartition(b")")[2].split()
    return not (fields and fields[0] in (b"Z", b"X"))


def start_time(pid: int) -> float:
    """When process ``pid`` started, in seconds since the epoch (0.0 when there is none)."""
    if pid <= 0:
        return 0.0
    import psutil  # here: every command line start imports this module (docs/performance.md)

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, OverflowError):
        return 0.0


def running_since(pid: int, moment: float) -> bool:
    """Whether ``pid`` is alive and was already running at ``moment``.

    A lock holder records when it took the lock; a process that reused its pid started
    after that, so it fails this test and is not mistaken for the holder.
    """
    if not pid_alive(pid):
        return False
    started = start_time(pid)
    return 0.0 < started <= moment + START_TIME_SLACK
