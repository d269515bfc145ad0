"""One POST to a webhook receiver, SSRF-safe: the host is resolved and checked here
(addresses.py), the connection goes to the address that was checked, with the URL's host for
TLS (SNI, certificate) and the Host header. Redirects are not followed, the response body is
read at most `max_body` bytes, and every socket operation has `timeout`."""

from __future__ import annotations

import dataclasses
import http.client
import socket
import ssl
import time
from urllib.parse import urlsplit

from common.webhooks.addresses import UnsafeWebhook, WebhookPolicy


@dataclasses.dataclass(frozen=True)
class Sent:
    """What one attempt got: a status, or an error (refused: the URL was not safe)."""

    status: int | None
    latency_ms: int
    error: str | None = None
    refused: bool = False


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class WebhookSender:
    def __init__(self, policy: WebhookPolicy, *, timeout: float, max_body: int = 4096,
                 user_agent: str = "bailian-webhooks/1") -> None:
        self.policy = policy
        self.timeout = timeout
        self.max_body = max_body
        self.user_agent = user_agent
        self._tls = ssl.create_default_context()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Sent:
        started = time.monotonic()
        try:
            scheme, host, port, address = self.policy.resolve(url)
        except UnsafeWebhook as exc:
            return Sent(None, _ms(started), f"refused: webhook {exc}", refused=True)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = (_PinnedHTTPS(host, port, address, self.timeout, self._tls) if scheme == "https"
                else _PinnedHTTP(host, port, address, self.timeout))
        try:
            conn.request("POST", target, body=body, headers={
                **headers, "Content-Type": "application/json", "User-Agent": self.user_agent,
                "Content-Length": str(len(body))})
            response = conn.getresponse()
            response.read(self.max_body)
            return Sent(response.status, _ms(started))
        except TimeoutError:
            return Sent(None, _ms(started), f"timeout after {self.timeout:g}s")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError: what http.client refuses to send (a path it cannot encode, say): an
            # attempt that failed, never a task that dies and comes back forever.
            return Sent(None, _ms(started), f"{type(exc).__name__}: {exc}"[:500])
        finally:
            conn.close()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
