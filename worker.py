"""`python worker.py`: the worker process (scripts/up.sh, the deploy units), as `yuqing worker`.
The worker itself is runtime/worker.py."""

from runtime.worker import run

if __name__ == "__main__":
    run()
