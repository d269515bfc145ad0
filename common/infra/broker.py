"""The Redis broker transport: one client per channel instead of one per command, and a closed
connection that says so with a connection error.

kombu's Redis channel builds a new `redis.Redis` object for every publish, every delivered
message's unacked-index entry and every ack (`Channel.conn_or_acquire`); with redis-py 7 each
costs about 60 µs of CPU on the bench box, three or four times per job. A client object only
borrows connections from the channel's pool and is safe to share between threads, so one per
channel does the same work.

When the broker drops, Celery's consumer collects its kombu Connection, which detaches the
transport (`transport.client = None`) and drops each channel's pool, and then closes it again;
that close, and a task's late ack arriving from a pool thread after it, ask the channel for a
new pool, and kombu's `_connparams` dies on the missing client with an AttributeError. That
error is no connection error, so Celery calls it unrecoverable and the worker process exits
(kombu 5.7.0 / celery 5.7.0; the same path as celery/kombu#582). Raising redis-py's
ConnectionError there instead lets every caller do what it does for a lost broker: the close
is ignored, the ack is logged as failed and the message stays in the unacked index, redelivered
after the visibility timeout (the task is idempotent against the job row). Everything else is
kombu's.
"""

from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client = None

    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection of this channel is closed")
        return super()._connparams(asynchronous=asynchronous)

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the event loop's own client, created once by kombu already
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        # kombu replaces the pool after a fork or a lost connection: follow it.
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
