"""The shared reliability core: retry policies, idempotency, overlap locks, dead letters.

It knows nothing of email or billing; task families and host apps compose it through the
:func:`saas_tasks.task` decorator.
"""
