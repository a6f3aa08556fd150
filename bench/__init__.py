"""`make bench` / `python -m bench`: figures for the incident system on a real Temporal dev server.

The bench starts its own processes (bench.harness): a Temporal CLI dev server on free ports with a
temporary database file, our worker (`python worker.py`), the web app (uvicorn) and a worker for a
bare baseline (bench.bare) on its own task queue of the same dev server; a migrated SQLite store in
a temporary directory (or `--database-url` for PostgreSQL). Every process is stopped on exit or
failure. The measurements (bench.measure):

1. submission: POST /api/incidents by 20 concurrent HTTP clients: latency and throughput.
2. lifecycle: drill incidents driven through the whole procedure, against a bare workflow with the
   same number of updates, activities and timers and no logic: wall time per incident, ours/bare.
3. escalation: urgent incidents whose R-REPLY deadlines fall in the same second, against a bare
   workflow that sleeps until that instant and writes one row: lateness until the store has each.
4. scale: many open incidents waiting on timers: worker RSS, cached workflows, list latencies.
5. history: events and payload bytes per completed lifecycle incident.

Each is printed as median and p99 with a description of the machine and written as JSON.
"""
