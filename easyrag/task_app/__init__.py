"""The task layer's Django app: the guarded Celery tasks, their records, the facade and the REST API."""
