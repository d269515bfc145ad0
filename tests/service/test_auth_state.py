"""The auth cache's fill/revoke race, driven step by step on the real MariaDB and Redis: a
reader that read "live" from the database before a logout committed must not leave "live" in
the cache after the logout stored "ended"."""

from __future__ import annotations

import uuid

import redis as redis_lib

from common.accounts.session_state import SESSION_KEY, USER_KEY, AuthState


class LogoutWhileReading:
    """A session factory whose sessions run `between` after their read, before the reader
    goes on to fill the cache: the interleaving a slow reader meets."""

    def __init__(self, database) -> None:
        self.database = database
        self.between = None

    def __call__(self):
        session = self.database.sessionmaker()
        original_close = session.close

        def close():
            original_close()
            if self.between is not None:
                step, self.between = self.between, None
                step()
        session.close = close
        return session


def _user_with_session(database, auth: AuthState) -> tuple[int, str]:
    from common.accounts import users

    with database.session() as session:
        user = users.create_user(session=session, username=f"race_{uuid.uuid4().hex[:10]}",
                                 password="correct-horse-battery")
        session_id = auth.open_session(session, user, 3600)
    # Other suites' databases share this Redis database and have their own user ids.
    auth.redis.delete(USER_KEY.format(user.id))
    return user.id, session_id


def test_a_slow_readers_fill_never_overwrites_a_logout(database, redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    factory = LogoutWhileReading(database)
    reader = AuthState(client, factory)
    writer = AuthState(client, database.sessionmaker)
    user_id, session_id = _user_with_session(database, writer)

    # The reader misses the cache, reads "live" from MySQL; then the logout commits and
    # stores "ended"; then the reader fills the cache.
    factory.between = lambda: writer.end_session(session_id, user_id)
    first = reader.check(session_id=session_id, user_id=user_id, generation=0)
    assert not first.revoked  # what it read before the logout: an answer for that moment

    assert client.get(SESSION_KEY.format(session_id)) == b"0"
    assert reader.check(session_id=session_id, user_id=user_id, generation=0).revoked
    client.delete(SESSION_KEY.format(session_id))
    assert reader.check(session_id=session_id, user_id=user_id, generation=0).revoked


def test_a_stale_generation_is_refused_from_the_cache_and_from_the_database(database,
                                                                             redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    auth = AuthState(client, database.sessionmaker)
    user_id, session_id = _user_with_session(database, auth)
    from common.accounts import users

    with database.session() as session:
        users.revoke_sessions(session=session, auth_state=auth, user_id=user_id)
    assert auth.check(session_id=session_id, user_id=user_id, generation=0).revoked
    client.flushdb()
    assert auth.check(session_id=session_id, user_id=user_id, generation=0).revoked
    assert not auth.check(session_id=session_id, user_id=user_id, generation=1).revoked
