"""The panel's login sessions: random tokens in memory, a fixed lifetime, a bounded table (the
oldest evicted first). A token lives in the `roomwarden_session` cookie (HttpOnly,
SameSite=Strict); a restart logs everyone out."""

from __future__ import annotations

import secrets
from collections import OrderedDict

from gateway.clock import Clock
from gateway.records import dataclass

COOKIE = "roomwarden_session"
MAX_SESSIONS = 256


@dataclass(slots=True)
class Session:
    user: str
    expires: float
    """clock.monotonic() after which the session is gone."""


class SessionTable:
    """In-memory sessions: random tokens, fixed lifetime, bounded size (oldest evicted)."""

    def __init__(self, clock: Clock, ttl: float, limit: int = MAX_SESSIONS) -> None:
        self._clock = clock
        self._ttl = ttl
        self._limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, user: str) -> str:
        self._prune()
        while len(self._sessions) >= self._limit:
            self._sessions.popitem(last=False)
        token = secrets.token_urlsafe(32)
        self._sessions[token] = Session(user, self._clock.monotonic() + self._ttl)
        return token

    def user(self, token: str | None) -> str | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if self._clock.monotonic() >= session.expires:
            del self._sessions[token]
            return None
        return session.user

    def drop(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _prune(self) -> None:
        now = self._clock.monotonic()
        for token in [t for t, s in self._sessions.items() if now >= s.expires]:
            del self._sessions[token]
