"""Deployable configuration of saas-tasks, read from the environment.

``celeryconfig`` is loaded by ``saas_tasks.app`` on top of the pack's defaults (set
``SAAS_TASKS_CELERY_CONFIG`` to load another module); ``beat_schedule`` holds every cron job;
``flowerconfig`` is Flower's ``--conf`` file. ``env.example`` lists every variable.
"""
