"""Whether a process on this host is still running: the journal lock asks it of a holder's
pid, the sandbox of the servers it started."""

from __future__ import annotations

import os


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
