"""tests/harness: the tool lookup, and the TCP proxy against a loopback echo server."""

import contextlib
import socket
import threading
import time

import pytest

from tests import harness
from tests.harness.net import TcpProxy


@pytest.fixture
def echo():
    """A loopback server echoing every message back; yields its address."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(connection):
        with connection, contextlib.suppress(OSError):
            while data := connection.recv(1024):
                connection.sendall(data)

    def accept():
        with contextlib.suppress(OSError):
            while True:
                threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()
    listener.close()


@pytest.fixture
def proxy(echo):
    proxy = TcpProxy(target=echo).start()
    yield proxy
    proxy.stop()


def connect(proxy):
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5)


def round_trip(connection, message=b"ping"):
    connection.sendall(message)
    return connection.recv(1024)


def test_forwards_both_ways(proxy):
    with connect(proxy) as connection:
        assert round_trip(connection) == b"ping"


def test_refuse_turns_new_connections_away_and_keeps_open_ones(proxy):
    with connect(proxy) as open_before:
        assert round_trip(open_before) == b"ping"  # accepted by the proxy, not only by the kernel
        with proxy.refuse():
            with pytest.raises(ConnectionRefusedError):
                connect(proxy)
            assert round_trip(open_before) == b"ping"
        with connect(proxy) as after:
            assert round_trip(after) == b"ping"


def test_cut_closes_open_connections_and_accepts_new_ones(proxy):
    with connect(proxy) as connection:
        assert round_trip(connection) == b"ping"
        proxy.cut()
        assert connection.recv(1024) == b""  # end of file: the server end went away
    with connect(proxy) as connection:
        assert round_trip(connection) == b"ping"


def test_down_refuses_and_cuts_until_the_block_ends(proxy):
    with connect(proxy) as connection:
        assert round_trip(connection) == b"ping"
        with proxy.down():
            assert connection.recv(1024) == b""
            with pytest.raises(ConnectionRefusedError):
                connect(proxy)
    with connect(proxy) as connection:
        assert round_trip(connection) == b"ping"


def test_slowed_delays_each_message_from_the_client(proxy):
    with connect(proxy) as connection:
        with proxy.slowed(0.3):
            started = time.monotonic()
            assert round_trip(connection) == b"ping"
            assert time.monotonic() - started >= 0.3
        assert proxy.delay == 0


@pytest.fixture
def no_tools(monkeypatch, tmp_path):
    """Neither .venv-tools nor anything on PATH."""
    monkeypatch.setattr(harness, "REPO", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_a_missing_tool_skips_naming_how_to_install_it(no_tools, monkeypatch):
    monkeypatch.delenv(harness.REQUIRE_TOOLS, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^actionlint not found: make tools$"):
        harness.tool_path("actionlint")
    with pytest.raises(pytest.skip.Exception, match=r"^terraform not found: install terraform on PATH$"):
        harness.tool_path("terraform")


def test_a_missing_tool_fails_where_tools_are_required(no_tools, monkeypatch):
    monkeypatch.setenv(harness.REQUIRE_TOOLS, "1")
    with pytest.raises(pytest.fail.Exception, match=r"^wrk not found: make system-packages"):
        harness.tool_path("wrk")


def test_a_tool_is_found_on_path_and_taken_from_the_tools_virtualenv_first(no_tools, tmp_path):
    (tmp_path / "hadolint").touch(mode=0o755)
    assert harness.tool_path("hadolint") == str(tmp_path / "hadolint")
    (tmp_path / ".venv-tools" / "bin").mkdir(parents=True)
    (tmp_path / ".venv-tools" / "bin" / "hadolint").touch()
    assert harness.tool_path("hadolint") == str(tmp_path / ".venv-tools" / "bin" / "hadolint")
