"""Let the Temporal SDK core's threads leave the interpreter before it finalises.

The SDK resolves each awaited core call from one of its Tokio threads: that thread takes the GIL
and calls `loop.call_soon_threadsafe`, whose wake-up write (`_write_to_self`) releases the GIL
around `send()`. The main thread wakes, finishes `asyncio.run` and starts finalising while the
core thread is still inside `send()`. When that thread then asks for the GIL back, CPython ends it
with `pthread_exit`, whose forced unwind through Rust frames releases a thread state that is not
current: "Fatal Python error: PyGILState_Release ... Python runtime state: finalizing" (exit 134),
or a segfault (139). Measured before this guard: 5 of 40 `yuqing setup` runs, 4 of 150 bare
connect-and-call scripts (issue 13; temporalio/sdk-python#300 is the same report upstream).

Python joins its own threads before finalising (`threading._shutdown`), but it does not know the
core's threads. `guard()` registers an exit hook that does the same for them: it waits, with the
GIL released, until no thread outside `threading` is running Python code, seen several times in a
row so that a thread waiting for the GIL gets it and finishes. It is cheap (a few milliseconds) and
bounded: after `LIMIT_SECONDS` it gives up with a line on stderr rather than hang a process that
is asked to exit. Every process that talks to Temporal calls it (runtime.client.connect does)."""

from __future__ import annotations

import atexit
import sys
import threading
import time

LIMIT_SECONDS = 5.0
CLEAN_CHECKS = 3  # consecutive checks with no foreign thread in Python code
_guarded = False
_lock = threading.Lock()


def foreign_threads_in_python() -> list[int]:
    """Ids of threads running Python code that `threading` does not know: the SDK core's Tokio
    threads while they resolve a future or forward log lines."""
    known = {t.ident for t in threading.enumerate()}
    return [ident for ident in sys._current_frames() if ident not in known]


def wait_for_core_threads(limit: float = LIMIT_SECONDS) -> bool:
    """Release the GIL until no foreign thread is in Python code; False if still busy at `limit`."""
    deadline = time.monotonic() + limit
    clean = 0
    while time.monotonic() < deadline:
        if foreign_threads_in_python():
            clean = 0
        else:
            clean += 1
            if clean >= CLEAN_CHECKS:
                return True
        time.sleep(0.001)  # hands the GIL to a thread that waits for it
    return False


def _at_exit() -> None:
    if not wait_for_core_threads():
        print(
            f"warning: Temporal core threads still in Python after {LIMIT_SECONDS:.0f}s at exit",
            file=sys.stderr,
        )


def guard() -> None:
    """Register the exit hook once per process (idempotent, thread-safe)."""
    global _guarded
    with _lock:
        if not _guarded:
            atexit.register(_at_exit)
            _guarded = True
