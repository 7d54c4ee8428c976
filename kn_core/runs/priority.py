"""CPU priority of the app's background threads: the worker computing queued prompts and the measurer computing
a page's measurements run below the pages (Linux: a thread's own nice value), so that a page drawn meanwhile,
and the browser showing it on the same machine, go first; the worker below the measurer (what a page watches now
before the queue)."""
from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)


def yield_to_pages(levels: int) -> bool:
    """Lower the calling thread's CPU priority by ``levels`` nice levels (Linux: a thread's own nice value; the
    OpenMP threads torch starts from this thread later inherit it). Elsewhere, or where it is not permitted,
    nothing changes. Returns whether it was lowered."""
    if not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS of a thread id could name another process
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + levels))
    except OSError as exc:
        log.info("%s keeps the process's CPU priority: %s", threading.current_thread().name, exc)
        return False
    return True
