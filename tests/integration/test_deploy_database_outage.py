"""The history database goes away while hosts are switched: the deployment still puts every
switched host back (that needs no database), and records its end once the database is back."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.integration.test_deploy_interrupted import SETTINGS, go, start_blocked
from tests.support.proxy import TcpProxy, tcp_proxy
from tests.support.services import postgres_database
from tests.support.stage import Stage, live, releases, revisions


@pytest.fixture
def database_proxy() -> Iterator[tuple[TcpProxy, str]]:
    """A new PostgreSQL database behind a proxy the test can cut: (proxy, URL through it)."""
    with postgres_database() as url:
        real = make_url(url)
        with tcp_proxy(real.host or "127.0.0.1", real.port or 5432) as proxy:
            yield proxy, real.set(port=proxy.port).render_as_string(hide_password=False)


@pytest.fixture
def database_url(database_proxy: tuple[TcpProxy, str]) -> str:
    """This module's history database: PostgreSQL, reached through the proxy."""
    return database_proxy[1]


def test_the_database_stopped_mid_activation_leaves_no_host_switched(
        stage: Callable[..., Stage], database_proxy: tuple[TcpProxy, str]) -> None:
    proxy, _url = database_proxy
    s = stage(3, SETTINGS)
    second, old, thread = start_blocked(s)

    proxy.cut()  # the database is gone while every host runs the new release
    go(s)
    s.wait_for(lambda: all(revisions(h)[-1].startswith(f"rollback {old} ")
                           for h in s.fleet.hosts))
    proxy.restore()
    thread.join()

    assert live(s.fleet) == [f"releases/{old}"] * 3
    assert releases(s.fleet) == [[old]] * 3
    done = s.state(second)
    assert done.state == "error"
    assert done.error and done.error.startswith("interrupted by OperationalError")
    assert done.error.endswith("every switched host put back")
    assert [(h.state, h.release) for h in done.hosts] == [("rolled_back", old)] * 3
