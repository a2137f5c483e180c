"""A PostgreSQL connection is pinged before use only when it has been idle long enough for the server to
have restarted under it.

SQLAlchemy's ``pool_pre_ping`` pings at every checkout, and Optuna's RDB storage checks a connection out for
every storage call: one worker's 40-trial P1.2 sweep on PostgreSQL made 1,050 ``SELECT 1`` round trips in
1,054 checkouts beside its ~3,500 statements (counted with SQLAlchemy's events); with this, 2. A connection used
less than :data:`IDLE_S` ago cannot have
lost a server that went down and came back since (a restart takes longer), so it is used as is; one idle
longer (a worker back from a long chain, the heartbeat's connection) is pinged first, and a dead one is
replaced before use. That is SQLAlchemy's own pessimistic recipe (a ``checkout`` listener that raises
``DisconnectionError``: the pool discards the connection and checks out a fresh one), with a threshold.
"""

from __future__ import annotations

import time

import sqlalchemy
from sqlalchemy import event, exc

IDLE_S = 1.0
_CHECKED_IN = "seg3a_checked_in"


def ping_when_idle(engine: sqlalchemy.engine.Engine, idle_s: float = IDLE_S) -> sqlalchemy.engine.Engine:
    """Ping ``engine``'s connections at checkout when they were last checked in (or connected) ``idle_s`` or
    more seconds ago, or when that is not known (a connection made before this was attached). Returns
    ``engine``."""

    def stamp(dbapi_connection, record) -> None:
        if record is not None:
            record.info[_CHECKED_IN] = time.monotonic()

    def checkout(dbapi_connection, record, proxy) -> None:
        since = record.info.pop(_CHECKED_IN, None)
        if since is not None and time.monotonic() - since < idle_s:
            return   # connected or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure: this connection is not usable
            raise exc.DisconnectionError("a pooled connection is gone (its ping failed)") from error

    event.listen(engine, "connect", stamp)
    event.listen(engine, "checkin", stamp)
    event.listen(engine, "checkout", checkout)
    return engine
