"""Device health: consecutive failures, online/offline, and the back-off schedule.

Pure code with an injected clock. A failing device is polled less and less often on an
exponential schedule (interval × multiplier^(failures − 1), capped at `backoff_max`), so it
cannot starve healthy devices on its bus; it is reported offline after `offline_after`
consecutive failures and online again after one success. A poll fails when the device gives
no data at all: silence, garbage, or an exception reply to every read (a detector that answers
"server device failure" is as blind as a silent one). A poll in which some reads gave data and
others failed is `partial`: the device stays online and is polled at its interval (its good
points keep coming); after `offline_after` such polls in a row it is degraded (as a silent one
goes offline after as many failures: one stray timeout says nothing), with the error, until a
poll reads everything.
"""

from __future__ import annotations

from gateway.config.site import FailurePolicy
from gateway.records import dataclass


@dataclass
class DeviceHealth:
    device: str
    interval: float
    policy: FailurePolicy
    online: bool | None = None
    """None until the first poll has told."""
    consecutive_failures: int = 0
    polls: int = 0
    failures: int = 0
    last_error: str | None = None
    last_success_mono: float | None = None
    partial: bool = False
    """The last poll read some of the device and failed on the rest (`last_error` says why)."""
    partial_polls: int = 0
    """Such polls in a row."""
    backoff_cap: float | None = None
    """At most this back-off while failing (a module carrying outputs: gateway.actions)."""

    def record_success(self, now: float) -> bool:
        """Count a good poll; return True if the device just came (back) online."""
        self.polls += 1
        self.consecutive_failures = 0
        self.last_error = None
        self.partial = False
        self.partial_polls = 0
        self.last_success_mono = now
        changed = self.online is not True
        self.online = True
        return changed

    def record_partial(self, error: str, now: float) -> bool:
        """Count a poll that read only part of the device (online, no back-off, `last_error`
        kept); return True if the device just became `degraded`."""
        polls = self.partial_polls + 1
        self.record_success(now)
        self.failures += 1
        self.last_error = error
        self.partial, self.partial_polls = True, polls
        return polls == self.policy.offline_after

    @property
    def degraded(self) -> bool:
        """`offline_after` polls in a row read only part of the device."""
        return self.partial_polls >= self.policy.offline_after

    def record_failure(self, error: str) -> bool:
        """Count a failed poll; return True if the device just went offline."""
        self.partial, self.partial_polls = False, 0
        self.polls += 1
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error
        if self.consecutive_failures >= self.policy.offline_after and self.online is not False:
            self.online = False
            return True
        return False

    def declare_offline(self) -> bool:
        """The whole bus is silent (gateway.field.bus_loop.BusSilence): offline now, whatever
        the count; return True if the device just went offline."""
        if self.online is False:
            return False
        self.online = False
        return True

    def next_delay(self) -> float:
        """Seconds until the next poll: the interval when healthy, backed off when failing."""
        if self.consecutive_failures == 0:
            return self.interval
        cap = max(self.policy.backoff_max if self.backoff_cap is None
                  else min(self.policy.backoff_max, self.backoff_cap), self.interval)
        exponent = self.consecutive_failures - 1
        try:
            delay = self.interval * self.policy.backoff_multiplier ** exponent
        except OverflowError:  # thousands of failures in a row: long past the cap
            return cap
        return max(0.0, min(float(delay), cap))
