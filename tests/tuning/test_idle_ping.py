"""A PostgreSQL storage pings a pooled connection only when it has been idle (tuning.storage.idle_ping): a
burst of storage calls makes no ping, and a storage whose server restarted while it was idle carries on
where a pool without pings loses its next call. Runs a real PostgreSQL server on loopback."""

from __future__ import annotations

import shutil
import time

import optuna
import pytest
import sqlalchemy

from tests.environment import NO_POSTGRES
from tuning.storage.budget import rdb_storage
from tuning.storage.idle_ping import IDLE_S


@pytest.fixture
def postgres(tmp_path):
    import tuning.local_services.services as ls

    try:
        ls.pg_bin("initdb")
    except Exception:  # noqa: BLE001
        pytest.skip(NO_POSTGRES)
    data, port = ls.pg_data_dir(tmp_path), ls.free_port()
    try:
        url = ls.start_postgres(data, port)

        def restart() -> None:
            ls.stop_postgres(data)
            ls.start_postgres(data, port)

        yield url, restart
    finally:
        ls.stop_postgres(data)
        shutil.rmtree(data, ignore_errors=True)


def _count_pings(engine) -> list:
    pings, ping = [], engine.dialect.do_ping

    def counted(dbapi_connection):
        pings.append(time.monotonic())
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted
    return pings


def test_a_busy_storage_is_not_pinged_and_an_idle_one_survives_a_server_restart(postgres, monkeypatch):
    url, restart = postgres
    monkeypatch.setenv("SEG3A_HEARTBEAT_INTERVAL", "60")   # the test's own calls only
    storage = rdb_storage(f"{url}/optuna")
    study = optuna.create_study(study_name="idle", storage=storage)
    plain = sqlalchemy.create_engine(f"{url}/optuna")     # a pool without pings, for contrast
    with plain.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
    pings = _count_pings(storage.engine)
    study.tell(study.ask(), 0.0)
    pings.clear()
    for value in range(10):                                 # dozens of storage calls, each a checkout
        study.tell(study.ask(), float(value))
    assert pings == []
    time.sleep(IDLE_S + 0.2)
    assert len(study.trials) == 11 and len(pings) >= 1      # idle a while: pinged first
    restart()
    time.sleep(IDLE_S + 0.2)
    before = len(pings)
    study.tell(study.ask(), 99.0)                           # its pooled connection died with the server
    assert len(pings) > before and study.trials[-1].value == 99.0
    with pytest.raises(sqlalchemy.exc.OperationalError):   # the same call on a pool without pings fails
        with plain.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    plain.dispose()
