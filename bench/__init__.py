"""`make bench` / `python -m bench`: figures for the incident system on a real Temporal dev server.

The bench starts its own processes (bench.harness): a Temporal CLI dev server on free ports with a
temporary database file, our worker (`python worker.py`), the web app (uvicorn), a worker for the bare
baselines (bench.bare) on its own task queue of the same dev server and the bare submission app
(bench.bare_web); the store on a scratch PostgreSQL database when one answers (else a migrated SQLite
file in a temporary directory; `--store`). The payload codec is off. Every process is stopped, and the
scratch database dropped, on exit or failure. The measurements (bench.measure):

1. submission: POST /api/incidents by 20 concurrent HTTP clients, against the bare app that starts a
   bare workflow and queries it once, as ours does: latency and throughput, p99 ours/bare.
2. lifecycle: drill incidents driven through the whole procedure, then as many bare workflows, each
   replaying the Temporal steps of one of ours (the totals are checked): wall time and worker CPU.
3. escalation: urgent incidents whose R-REPLY deadlines fall in the same second (`--burst-n`, 1,000
   by default: most replay from history), against a bare workflow that sleeps until that instant and
   writes one row: lateness until the store has each.
4. scale: many open incidents waiting on timers: worker RSS, cached workflows, list latencies.
5. history: events and payload bytes per completed lifecycle incident.

Submission, lifecycle and history run `--runs` times (3); the targets of issue 21 are printed as a
table (bench.targets), each the median of the runs with its spread, and written with everything else
as JSON.
"""
