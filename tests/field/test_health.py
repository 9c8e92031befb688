"""The back-off schedule of a failing device: the interval when healthy, then interval ×
multiplier^(failures − 1) up to the cap — the schedule tenacity's `wait_exponential` gave
before (compared with it here), without building a tenacity object per device."""

from __future__ import annotations

import tenacity
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.site import FailurePolicy
from gateway.field.health import DeviceHealth


def _tenacity_delay(interval: float, policy: FailurePolicy, failures: int) -> float:
    wait = tenacity.wait_exponential(multiplier=interval, exp_base=policy.backoff_multiplier,
                                     max=max(policy.backoff_max, interval))
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = failures
    return float(wait(state))


@given(interval=st.floats(0.05, 600.0), multiplier=st.floats(1.0, 10.0),
       cap=st.floats(0.1, 3600.0), failures=st.integers(1, 5000))
def test_the_schedule_is_tenacity_s_exponential_wait(interval: float, multiplier: float,
                                                     cap: float, failures: int) -> None:
    policy = FailurePolicy(backoff_multiplier=multiplier, backoff_max=cap)
    health = DeviceHealth("d", interval, policy)
    assert health.next_delay() == interval
    for _ in range(failures):
        health.record_failure("timeout")
    delay = health.next_delay()
    assert delay == _tenacity_delay(interval, policy, failures)
    assert interval <= delay <= max(cap, interval)
    health.record_success(0.0)
    assert health.next_delay() == interval


def test_the_default_policy_doubles_up_to_a_minute() -> None:
    health = DeviceHealth("d", 2.0, FailurePolicy())
    delays = []
    for _ in range(8):
        health.record_failure("timeout")
        delays.append(health.next_delay())
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
