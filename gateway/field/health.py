"""Device health: consecutive failures, online/offline, and the back-off schedule.

Pure code with an injected clock. A failing device is polled less and less often on an
exponential schedule (interval × multiplier^(failures − 1), capped at `backoff_max`), so it
cannot starve healthy devices on its bus; it is reported offline after `offline_after`
consecutive failures and online again after one success.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.site import FailurePolicy


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

    def record_success(self, now: float) -> bool:
        """Count a good poll; return True if the device just came (back) online."""
        self.polls += 1
        self.consecutive_failures = 0
        self.last_error = None
        self.last_success_mono = now
        changed = self.online is not True
        self.online = True
        return changed

    def record_failure(self, error: str) -> bool:
        """Count a failed poll; return True if the device just went offline."""
        self.polls += 1
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error
        if self.consecutive_failures >= self.policy.offline_after and self.online is not False:
            self.online = False
            return True
        return False

    def next_delay(self) -> float:
        """Seconds until the next poll: the interval when healthy, backed off when failing."""
        if self.consecutive_failures == 0:
            return self.interval
        cap = max(self.policy.backoff_max, self.interval)
        exponent = self.consecutive_failures - 1
        try:
            delay = self.interval * self.policy.backoff_multiplier ** exponent
        except OverflowError:  # thousands of failures in a row: long past the cap
            return cap
        return max(0.0, min(float(delay), cap))
