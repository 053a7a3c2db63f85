"""Network faults made of real sockets on loopback: a proxy whose connections freeze silently, and
remotes that accept connections and never answer. Used by the fault e2e tests and the chaos bench."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import yaml


class _Listener:
    """A loopback TCP listener that hands every accepted connection to `handle` in a thread."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"listener-{self.port}").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._keep(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


class HangingRemote(_Listener):
    """Accepts every connection and never sends a byte, nor closes: a remote that hangs."""

    def handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):  # read (so the client's writes never block) and never answer
                pass


class FreezingProxy(_Listener):
    """Forwards loopback connections to `upstream` (host, port). `freeze()` makes every connection open
    at that moment stop forwarding in both directions, silently: no FIN, no RST, as when a NAT or a
    firewall drops a connection's state. Connections opened later go through."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._frozen: set[int] = set()  # ids of frozen client sockets
        self._open: list[socket.socket] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        try:
            up = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            conn.close()
            return
        up.settimeout(None)
        self._keep(up)
        with self._lock:
            self._open.append(conn)
        key = id(conn)
        threading.Thread(target=self._pump, args=(up, conn, key), daemon=True).start()
        self._pump(conn, up, key)

    def _pump(self, src: socket.socket, dst: socket.socket, key: int) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if key in self._frozen:
                    continue  # swallowed: the other side hears nothing, ever
                dst.sendall(data)
        if key not in self._frozen and not self._closed:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def freeze(self) -> int:
        """Freeze the connections open now; returns how many."""
        with self._lock:
            live = [c for c in self._open if c.fileno() != -1]
            self._frozen.update(id(c) for c in live)
        return len(live)

    def kubeconfig(self, original: Path, into: Path) -> Path:
        """A copy of `original` whose servers are this proxy (TLS names unchanged: still 127.0.0.1)."""
        config = yaml.safe_load(original.read_text())
        for entry in config.get("clusters") or ():
            cluster = entry["cluster"]
            parts = urlsplit(cluster["server"])
            cluster["server"] = f"{parts.scheme}://127.0.0.1:{self.port}{parts.path}"
        into.write_text(yaml.safe_dump(config))
        return into


def api_server_address(kubeconfig: Path) -> tuple[str, int]:
    config = yaml.safe_load(kubeconfig.read_text())
    parts = urlsplit(config["clusters"][0]["cluster"]["server"])
    return parts.hostname or "127.0.0.1", parts.port or 443
