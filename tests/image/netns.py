"""A network namespace for the runc container, as a pod has, with the two paths a pod's network
gives it here: the container reaches the apiserver at 127.0.0.1:<port> (a TCP relay into the host's
loopback, standing in for the Service VIP kube-proxy would route), and the test reaches the
container's port 8080 through sockets opened inside the namespace. The operator keeps the chart's
fixed port without colliding with anything else on the machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NetworkNamespace:
    def __init__(self) -> None:
        self.name = f"rv-{uuid.uuid4().hex[:10]}"
        self.path = Path("/run/netns") / self.name
        self._threads: list[threading.Thread] = []
        self._listeners: list[socket.socket] = []

    def create(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True, text=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True, text=True)

    def delete(self) -> None:
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.close()
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)

    def inside(self, make: Callable[[], T]) -> T:
        """Run `make` (e.g. socket creation) in a thread that has entered the namespace: a socket
        belongs to the namespace it was created in, whichever thread uses it later."""
        result: list[Any] = []

        def enter_and_make() -> None:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            fd = os.open(self.path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    result.append(OSError(ctypes.get_errno(), "setns failed"))
                    return
            finally:
                os.close(fd)
            try:
                result.append(make())
            except Exception as exc:
                result.append(exc)

        thread = threading.Thread(target=enter_and_make)  # never returns to the host namespace: it ends
        thread.start()
        thread.join()
        if isinstance(result[0], Exception):
            raise result[0]
        return result[0]  # type: ignore[no-any-return]

    def connect(self, port: int, timeout: float = 5) -> socket.socket:
        sock = self.inside(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        sock.settimeout(timeout)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        return sock

    def http_get(self, port: int, path: str, timeout: float = 5) -> tuple[int, str]:
        """A plain HTTP/1.0 GET to 127.0.0.1:port inside the namespace: (status, body)."""
        with self.connect(port, timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body.decode()

    def relay_to_host(self, host_url: str) -> int:
        """Listen on 127.0.0.1:<the same port> inside the namespace and relay every connection to
        the host's address in `host_url` (https://127.0.0.1:PORT); returns the port."""
        parsed = urllib.parse.urlparse(host_url)
        target = (parsed.hostname or "127.0.0.1", parsed.port or 443)

        def listen() -> socket.socket:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", target[1]))
            listener.listen(64)
            return listener

        listener = self.inside(listen)
        self._listeners.append(listener)
        thread = threading.Thread(target=_accept_loop, args=(listener, target), daemon=True)
        thread.start()
        self._threads.append(thread)
        return target[1]


def _accept_loop(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        try:
            inner, _ = listener.accept()
        except OSError:
            return  # the listener was closed
        try:
            outer = socket.create_connection(target, timeout=10)
        except OSError:
            inner.close()
            continue
        outer.settimeout(None)
        for src, dst in ((inner, outer), (outer, inner)):
            threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            src.shutdown(socket.SHUT_RD)


@contextlib.contextmanager
def network_namespace() -> Iterator[NetworkNamespace]:
    ns = NetworkNamespace()
    ns.create()
    try:
        yield ns
    finally:
        ns.delete()
