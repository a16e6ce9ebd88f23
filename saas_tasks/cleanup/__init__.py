"""Cleanup: retention jobs that trim the tables that grow forever.

Sessions, audit and system logs, export files, idempotency records, dead letters and (when they
live in the database) Celery results are deleted in bounded batches, each its own short
transaction, so the live tables are never locked for long. A run stops at a time budget and
hands over to a follow-up run instead of running into its time limit; the overlap lock keeps two
runs of one purge from working at once; each run returns its counts and writes one line to the
``system_logs`` table.

* :mod:`.queries` — every table, column and SQL statement (point the pack at your own tables
  by changing that one module);
* :mod:`.batches` — the batch loop, the time budget and the run record;
* :mod:`.purges` — one plain function a purge (tests call them without Celery);
* :mod:`.exports` and :mod:`.results` — export files in storage, Celery's result tables;
* :mod:`.tasks` — the thin Celery tasks with their stable names.
"""
