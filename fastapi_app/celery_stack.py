"""fastapi-celery's process tree: `python -m fastapi_app.celery_stack WORKER_CMD... -- WEB_CMD...`.

Starts the Celery worker and the web server side by side, as a compose file would run two services,
so the harness, `bench up` and the container have one process to start, measure and stop. A SIGTERM
or SIGINT is passed on once to both (each in its own session, so a signal to this process group
does not reach them twice: a second signal makes uvicorn skip its graceful shutdown). If either
exits on its own, the other is stopped too and the exit status says so. Each child dies with this
process (PR_SET_PDEATHSIG), so a SIGKILL here leaves no stray worker.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") in (0, len(argv) - 1):
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    split = argv.index("--")
    children = [subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509
                for cmd in (argv[:split], argv[split + 1:])]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    asked = stopping  # False: a child exited on its own (a crash), not because we were asked to stop
    stop()
    for child in children:
        child.wait()
    return 0 if asked else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
