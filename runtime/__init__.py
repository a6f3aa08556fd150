"""What every process that talks to Temporal shares: the client (connect, the data converter),
the payload codec, observability (logging, metrics, health) and the exit guard, and the worker's
entry point. Imported by worker.py, starter/, tests and the bench; imports config/, plan/,
store/, activities/ and workflows/ as needed, never starter/."""
