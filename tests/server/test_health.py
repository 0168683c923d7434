"""``/-/healthy`` answers while the process runs; ``/-/ready`` only while its store answers."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from tests.server.conftest import open_site
from tests.server.tcpproxy import TcpProxy
from tests.stores import pg_schema_url


def test_ready_when_the_store_answers(backend: str, tmp_path: Path) -> None:
    with open_site(backend, tmp_path) as site, site.client() as c:
        r = c.get("/-/ready")
        assert (r.status_code, r.text) == (200, "signalbox is ready.\n")
        assert c.get("/-/healthy").status_code == 200


def test_a_closed_store_is_not_ready_and_says_why(backend: str, tmp_path: Path) -> None:
    with open_site(backend, tmp_path) as site, site.client() as c:
        site.db.close()
        r = c.get("/-/ready")
        healthy = c.get("/-/healthy")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "unavailable"
    assert body["error"].startswith("not ready: store ")
    assert "closed" in body["error"]
    assert healthy.status_code == 200  # the process is fine; only traffic should go elsewhere


@pytest.mark.service("postgresql")
def test_an_unreachable_postgresql_is_not_ready_and_reads_are_503_until_it_is_back(
    tmp_path: Path,
) -> None:
    with pg_schema_url() as url:
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname and parts.port
        proxy = TcpProxy((parts.hostname, parts.port))
        proxied = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
        try:
            with open_site("postgresql", tmp_path, url=proxied) as site, site.client() as c:
                assert c.get("/-/ready").status_code == 200
                assert c.get("/api/v1/query", params={"query": "up"}).status_code == 200

                proxy.stop()
                r = c.get("/-/ready")
                assert r.status_code == 503
                reason = r.json()["error"]
                assert reason.startswith(
                    f"not ready: store postgresql://postgres@127.0.0.1:{proxy.port}/"
                )
                for path, params in [
                    ("/api/v1/query", {"query": "up"}),
                    ("/api/v1/series", {"match[]": "up"}),
                    ("/api/v1/monitors", {}),
                ]:
                    r = c.get(path, params=params)
                    assert r.status_code == 503, (path, r.text)
                    assert r.json()["errorType"] == "unavailable"
                assert c.get("/-/healthy").status_code == 200

                proxy = TcpProxy((parts.hostname, parts.port), port=proxy.port)
                assert c.get("/-/ready").status_code == 200
                assert c.get("/api/v1/query", params={"query": "up"}).status_code == 200
        finally:
            proxy.stop()


def test_the_listening_socket_is_tcp_so_replies_are_not_held_by_nagle() -> None:
    """asyncio turns Nagle off (TCP_NODELAY) on accepted connections only when the listening
    socket was made with IPPROTO_TCP; made with protocol 0, every reply on a keep-alive
    connection (Grafana, browsers) waited ~40 ms for the client's delayed ACK."""
    import socket

    from signalbox.server.serve import listen

    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
