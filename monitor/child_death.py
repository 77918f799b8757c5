"""Children that do not outlive ``wirewatch run``: rq workers and the embedded Redis.

They are started in sessions of their own (so a Ctrl-C in the terminal reaches the
service, which stops them in order), so nothing else ends them when the service dies
without stopping them (``kill -9``, the OOM killer). Orphaned workers kept taking jobs
under a configuration nobody ran any more, and an orphaned embedded Redis kept its
append-only file open while the next ``wirewatch run`` started a second one on it.
On Linux, :func:`die_with_parent` gives ``subprocess.Popen`` a ``preexec_fn`` that asks
the kernel (``prctl(PR_SET_PDEATHSIG)``) to send the child SIGTERM when its parent
thread ends: a worker then stops after its job, Redis after flushing its AOF. Elsewhere
it returns None and children are left as before.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies.

    The spawning thread must live as long as the process (the kernel watches the thread
    that forked): every spawn in the service happens on its main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request: go now
            os._exit(1)

    return preexec
