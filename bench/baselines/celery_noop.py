"""A bare Celery app with a no-op task: the floor of a Celery round trip on this machine.

Same broker settings as the platform (late acks, prefetch 1), with a Redis result backend so
the producer learns of completion the standard way.
"""

import os

from celery import Celery

app = Celery("noop", broker=os.environ["NOOP_BROKER_URL"], backend=os.environ["NOOP_RESULT_URL"],
             set_as_current=False)
app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True,
                worker_prefetch_multiplier=1, task_serializer="json",
                accept_content=["json"])


@app.task(name="noop")
def noop(value=None):
    return value
