"""The panel's login sessions: random tokens in memory, a fixed lifetime, a bounded table. A
token lives in the `roomwarden_session` cookie (HttpOnly, SameSite=Strict); a restart logs
everyone out.

The table holds MAX_SESSIONS, a user at most MAX_SESSIONS_PER_USER of them: a user at that cap
who logs in again loses their own least recently used session, and a full table gives up the
least recently used session of a user holding the most — never another user's while someone
holds more. Before, the table evicted its oldest session whoever held it: 256 logins of a
view-only user (20 s) logged the duty operator out during an alarm (an audit)."""

from __future__ import annotations

import secrets
from collections import Counter, OrderedDict
from collections.abc import Iterator

from gateway.clock import Clock
from gateway.records import dataclass

COOKIE = "roomwarden_session"
MAX_SESSIONS = 256
MAX_SESSIONS_PER_USER = 8
"""A user's browsers and devices logged in at once (a phone, a PC, the control-room screen …)."""


@dataclass(slots=True)
class Session:
    user: str
    expires: float
    """clock.monotonic() after which the session is gone."""


class SessionTable:
    """In-memory sessions: random tokens, fixed lifetime, bounded size and bounded per user
    (see the module docstring for whose session goes)."""

    def __init__(self, clock: Clock, ttl: float, limit: int = MAX_SESSIONS,
                 per_user: int = MAX_SESSIONS_PER_USER) -> None:
        self._clock = clock
        self._ttl = ttl
        self._limit = limit
        self._per_user = max(1, per_user)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        """Least recently used first (a look-up moves a session to the end)."""

    def create(self, user: str) -> str:
        self._prune()
        counts = Counter(s.user for s in self._sessions.values())
        while counts[user] >= self._per_user:
            counts[self._evict(user)] -= 1
        while len(self._sessions) >= self._limit:
            most = max(counts.values())
            counts[self._evict(next(u for u in self._lru_users() if counts[u] == most))] -= 1
        token = secrets.token_urlsafe(32)
        self._sessions[token] = Session(user, self._clock.monotonic() + self._ttl)
        return token

    def _lru_users(self) -> Iterator[str]:
        """The users, in the order of their sessions, least recently used first."""
        return (s.user for s in self._sessions.values())

    def _evict(self, user: str) -> str:
        """Drop `user`'s least recently used session; returns `user`."""
        token = next(t for t, s in self._sessions.items() if s.user == user)
        del self._sessions[token]
        return user

    def user(self, token: str | None) -> str | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if self._clock.monotonic() >= session.expires:
            del self._sessions[token]
            return None
        self._sessions.move_to_end(token)  # recently used: the last to go
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
