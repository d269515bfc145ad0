"""The Redis broker transport, with one client per channel instead of one per command.

kombu's Redis channel builds a new `redis.Redis` object for every publish, every delivered
message's unacked-index entry and every ack (`Channel.conn_or_acquire`); with redis-py 7 each
costs about 60 µs of CPU on the bench box, three or four times per job. A client object only
borrows connections from the channel's pool and is safe to share between threads, so one per
channel does the same work. Everything else is kombu's.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client = None

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
