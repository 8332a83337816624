"""Slowing down password guessing without letting a guesser lock a real user out.

Failed logins are counted per client address and per username. After a few free
failures, each further one locks that key for twice as long as the last (1 s,
2 s, 4 s, ... up to 15 minutes); a locked key is refused with 429 before any
password is hashed, so guessing also stops costing the server argon2 time.

A lock per username alone would let anyone keep a labeler out by guessing wrong
once every 15 minutes. So a browser that has logged in as that user before holds
a signed device cookie (OWASP's "device cookies" against online guessing), and its
attempts for that user are counted under the device alone: the username and
address locks do not apply to it. A stolen device cookie buys its holder only
that device's few free failures.

Counts live in memory (one server process, as docs/label.md asks), bounded by
evicting the least recently failed key, and are forgotten a day after a key's
last failure.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

log = logging.getLogger(__name__)

DEVICE_COOKIE = "rlhf_label_device"
DEVICE_DAYS = 180
FREE_PER_USERNAME = 5  # a person mistyping; a trusted device gets the same
FREE_PER_ADDRESS = 20  # an office behind one NAT address has many people mistyping
MAX_LOCK_SECONDS = 15 * 60
FORGET_SECONDS = 24 * 3600
MAX_KEYS = 100_000


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


class Backoff:
    """Failures per key, and how long each key must wait before its next attempt."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS):
        self.clock, self.max_keys = clock, max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        with self._lock:
            entry = self._live(key)
            return max(0.0, entry.locked_until - self.clock()) if entry else 0.0

    def failed(self, key: str, free: int) -> float:
        """Count a failure; returns the seconds the key is now locked for (0: not locked)."""
        now = self.clock()
        with self._lock:
            entry = self._live(key) or _Failures(0, now, now)
            entry.count, entry.last = entry.count + 1, now
            lock = 0.0 if entry.count <= free else min(2.0 ** (entry.count - free - 1), MAX_LOCK_SECONDS)
            entry.locked_until = now + lock
            self._keys[key] = entry
            self._keys.move_to_end(key)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            return lock

    def forget(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def _live(self, key: str) -> _Failures | None:
        entry = self._keys.get(key)
        if entry is not None and self.clock() - entry.last > FORGET_SECONDS:
            del self._keys[key]
            return None
        return entry


class LoginGuard:
    """The login form's use of `Backoff`: which keys an attempt counts against, the
    device cookie, and the log of failures."""

    def __init__(self, secret: str, secure_cookies: bool, backoff: Backoff | None = None):
        self.backoff = backoff or Backoff()
        self.secure_cookies = secure_cookies
        self._devices = URLSafeTimedSerializer(secret, salt="rlhf-label-device")

    def keys(self, request: Request, username: str) -> dict[str, int]:
        """key -> free failures, for an attempt to log in as `username` from this client."""
        device = self._trusted_device(request, username)
        if device is not None:
            return {f"device:{device}": FREE_PER_USERNAME}
        address = request.client.host if request.client else "unknown"
        return {f"address:{address}": FREE_PER_ADDRESS, f"user:{username[:64]}": FREE_PER_USERNAME}

    def wait(self, keys: dict[str, int]) -> int:
        """Whole seconds before this attempt may be checked (0: now)."""
        return math.ceil(max(self.backoff.wait(key) for key in keys))

    def failed(self, request: Request, keys: dict[str, int], username: str) -> None:
        address = request.client.host if request.client else "unknown"
        log.warning("failed login as %r from %s", username[:64], address)
        for key, free in keys.items():
            lock = self.backoff.failed(key, free)
            if lock:
                log.warning("logins for %s locked for %.0f s", key, lock)

    def succeeded(self, keys: dict[str, int], response: Response, username: str) -> None:
        """Clear the user's and device's failures (not the address's: a guesser could
        clear their own by logging in to an account they own) and trust this browser."""
        for key in keys:
            if not key.startswith("address:"):
                self.backoff.forget(key)
        if not any(key.startswith("device:") for key in keys):
            value = self._devices.dumps([username, secrets.token_urlsafe(16)])
            response.set_cookie(DEVICE_COOKIE, value, max_age=DEVICE_DAYS * 24 * 3600, path="/login",
                                httponly=True, samesite="strict", secure=self.secure_cookies)

    def reset_user(self, username: str) -> None:
        """An admin set a new password: the username's lock is over."""
        self.backoff.forget(f"user:{username}")

    def _trusted_device(self, request: Request, username: str) -> str | None:
        cookie = request.cookies.get(DEVICE_COOKIE)
        if not cookie:
            return None
        try:
            name, device = self._devices.loads(cookie, max_age=DEVICE_DAYS * 24 * 3600)
        except (BadSignature, ValueError, TypeError):
            return None
        return device if name == username else None
