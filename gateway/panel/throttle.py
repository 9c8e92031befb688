"""Login throttling for the panel: per client address, per user name and for the whole panel,
each with a bounded back-off, so password guessing is slow from one address or from many, and
no attacker can lock an operator out for good.

Every failed login counts against three sliding windows of `window` seconds (60):

- the client address: `per_address` failures (5), then that address waits until its oldest
  failure leaves the window (at most one window);
- the user name: `per_user` failures (5), then the user name backs off exponentially — 2 s
  after the first failure past the limit, doubling with each further one, at most
  `max_backoff` (60 s) — whichever address the guesses come from; the back-off starts afresh
  only after a whole window without failures past its last wait. Names the panel does not
  know share one bucket (`?`), so guessing names cannot grow the table;
- the panel: `overall` failures (30), then every login waits until the oldest leaves the window
  (at most one window).

Bounded, not forever: each wait is at most `max(window, max_backoff)` = 60 s, and a failure
that comes in while the attempt is refused (429) is not counted, so hammering does not extend
the wait. An operator whose address has logged in successfully as that user within
`trusted_for` (24 h) is exempt from the user-name and panel-wide limits (its own address limit
still applies): an attacker who keeps a user name or the whole panel throttled still cannot
stop an operator on a known phone or PC from logging in. Someone on a new device may have to
wait up to a minute per attempt while an attack is on.

Every table is bounded: at most `max_clients` addresses (oldest forgotten first), one entry per
configured user plus `?`, `max_trusted` trusted (address, user) pairs.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Collection

from gateway.clock import Clock
from gateway.records import dataclass, field

WINDOW = 60.0
PER_ADDRESS = 5
PER_USER = 5
OVERALL = 30
MAX_BACKOFF = 60.0
TRUSTED_FOR = 24 * 3600.0
MAX_CLIENTS = 1024
MAX_TRUSTED = 256
UNKNOWN_USER = "?"


@dataclass(slots=True)
class _User:
    failures: deque[float] = field(default_factory=deque)
    until: float = 0.0
    """clock.monotonic() before which this user name is not tried (the back-off)."""
    over: int = 0
    """Failures past the limit in the current run (the back-off's exponent)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """What `failed` did to a user name's back-off, so that `succeeded` can take it back."""

    bucket: str
    before: tuple[int, float]
    """(over, until) before this attempt was counted."""
    after: tuple[int, float]
    """(over, until) after it."""


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: str
    """"address", "user" or "panel": which limit refused the attempt."""
    wait: float
    """Seconds until it may try again."""


class LoginThrottle:
    """Decides whether a login attempt may be checked, and records how it went. Not
    thread-safe: the panel calls it from its event loop."""

    def __init__(self, clock: Clock, users: Collection[str], *, window: float = WINDOW,
                 per_address: int = PER_ADDRESS, per_user: int = PER_USER,
                 overall: int = OVERALL, max_backoff: float = MAX_BACKOFF,
                 trusted_for: float = TRUSTED_FOR, max_clients: int = MAX_CLIENTS) -> None:
        self._clock = clock
        self._known = frozenset(users)
        self.window = window
        self.per_address = per_address
        self.per_user = per_user
        self.overall = overall
        self.max_backoff = max_backoff
        self.trusted_for = trusted_for
        self._max_clients = max_clients
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()
        self._users: dict[str, _User] = {}
        self._all: deque[float] = deque()
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()

    def check(self, client: str, user: str) -> Refusal | None:
        """None if `client` may try to log in as `user` now, else which limit says no."""
        now = self._clock.monotonic()
        failures = self._recent(self._addresses.get(client), now)
        if len(failures) >= self.per_address:
            return Refusal("address", failures[0] + self.window - now)
        if self._is_trusted(client, user, now):
            return None
        state = self._users.get(self._bucket(user))
        if state is not None and state.until > now:
            return Refusal("user", state.until - now)
        overall = self._recent(self._all, now)
        if len(overall) >= self.overall:
            return Refusal("panel", overall[0] + self.window - now)
        return None

    def failed(self, client: str, user: str) -> Attempt:
        """Count a failed attempt (call it before checking the password, so that parallel
        guesses cannot all pass `check` first; `succeeded`, given the answer, takes it back —
        the back-off it started or lengthened included)."""
        now = self._clock.monotonic()
        failures = self._recent(self._addresses.get(client), now)
        failures.append(now)
        self._addresses[client] = failures
        self._addresses.move_to_end(client)
        while len(self._addresses) > self._max_clients:
            self._addresses.popitem(last=False)
        self._recent(self._all, now).append(now)
        bucket = self._bucket(user)
        state = self._users.setdefault(bucket, _User())
        before = (state.over, state.until)
        self._recent(state.failures, now).append(now)
        if state.over and now - state.until > self.window:
            state.over = 0  # quiet for a whole window after its last wait: start afresh
        if len(state.failures) > self.per_user or state.over:
            state.over = min(state.over + 1, 30)  # 2**30 s is far past any max_backoff
            state.until = now + min(self.max_backoff, 2.0 ** state.over)
        return Attempt(bucket, before, (state.over, state.until))

    def succeeded(self, client: str, user: str | None = None,
                  attempt: Attempt | None = None) -> None:
        """A correct password: take back the failure counted for this attempt (with
        `attempt`, what `failed` answered: the back-off it set too, unless another failure
        changed it since — a correct login never makes the user's other devices wait), clear
        the address, and trust this address for this user (None: only clear the address)."""
        now = self._clock.monotonic()
        self._addresses.pop(client, None)
        if user is None:
            return
        state = self._users.get(self._bucket(user))
        if state is not None and state.failures:
            state.failures.pop()
        if state is not None and attempt is not None and attempt.bucket == self._bucket(user) \
                and (state.over, state.until) == attempt.after:
            state.over, state.until = attempt.before
        if self._all:
            self._all.pop()
        self._trusted[(client, user)] = now
        self._trusted.move_to_end((client, user))
        while len(self._trusted) > MAX_TRUSTED:
            self._trusted.popitem(last=False)

    def _bucket(self, user: str) -> str:
        return user if user in self._known else UNKNOWN_USER

    def _is_trusted(self, client: str, user: str, now: float) -> bool:
        since = self._trusted.get((client, user))
        if since is None:
            return False
        if now - since > self.trusted_for:
            del self._trusted[(client, user)]
            return False
        return True

    def _recent(self, failures: deque[float] | None, now: float) -> deque[float]:
        if failures is None:
            return deque()
        cutoff = now - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures
