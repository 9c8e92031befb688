"""Output supervision across wall-clock steps (K2 of the clock audit): a Pi without an RTC has
its clock stepped by NTP, forward or back, while the gateway runs. The feedback check compares
on the monotonic clock only, so a step changes no verdict and no timing.

Before the fix a step back of 1 h made every later sample look older than the fan's command:
no `actions.output_no_feedback` and no escalation for as long as the step."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.actions.supervision import NO_FEEDBACK_RULE
from gateway.alarms.types import Severity
from gateway.clock import ManualClock
from gateway.field.sample import Quality, Sample
from tests.actions.test_supervision import _airflow, _by_rule, _h2_alarm, _run, _supervisor


def test_a_step_back_after_the_command_does_not_blind_the_feedback_check() -> None:
    """The audit's run: H2 at alarm, fan on, airflow confirmed; the clock steps back 1 h;
    the airflow switch opens → the escalated alarm 20 s later, as without the step."""
    clock = ManualClock()
    sup = _supervisor(clock)
    h2 = [_h2_alarm(True)]
    result = _run(sup, clock, 15, True, True, h2)  # commanded, airflow follows
    assert not result[NO_FEEDBACK_RULE].active
    clock.step_wall(-3600.0)  # NTP steps the clock back an hour
    result = _run(sup, clock, 3, True, True, h2)
    assert not result[NO_FEEDBACK_RULE].active
    # the fan stops: `within` (20 s) from the first sample that shows it
    result = _run(sup, clock, 20, True, False, h2)
    assert not result[NO_FEEDBACK_RULE].active
    alarm = _run(sup, clock, 1, True, False, h2)[NO_FEEDBACK_RULE]
    assert alarm.active and alarm.severity is Severity.CRITICAL
    assert "charge_inhibit" in alarm.actions
    assert alarm.ts == clock.now_ns()  # stamped with the (stepped) wall clock of the sample


def test_a_step_back_right_after_the_command_counts_the_first_samples() -> None:
    """The command is seen, then the clock steps back before the first poll: the samples
    since are evidence (stamped before the command, but they arrived after it)."""
    clock = ManualClock()
    sup = _supervisor(clock)
    _run(sup, clock, 5, False, False)
    clock.advance(1.0)
    assert _by_rule(sup.evaluate({"fan": True}, [])) == {}  # the command; no sample since
    clock.step_wall(-3600.0)
    result = _run(sup, clock, 19, True, False)
    assert result == {}
    assert _run(sup, clock, 1, True, False)[NO_FEEDBACK_RULE].active


def test_a_step_forward_does_not_backdate_the_mismatch() -> None:
    """A step forward between the last agreeing sample and the one showing the fan stopped
    must not start the mismatch's clock early (an alarm before `within`)."""
    clock = ManualClock()
    sup = _supervisor(clock)
    _run(sup, clock, 30, True, True)
    clock.advance(1.0)
    sample = Sample("di.di7", False, clock.now_ns(), Quality.GOOD)  # stamped, then delivered
    clock.step_wall(+86400.0)
    sup.ingest([sample])
    assert not _by_rule(sup.evaluate({"fan": True}, []))[NO_FEEDBACK_RULE].active
    assert not _run(sup, clock, 19, True, False)[NO_FEEDBACK_RULE].active
    assert _run(sup, clock, 1, True, False)[NO_FEEDBACK_RULE].active


Step = tuple[bool, bool | None, float]
"""One second of a run: the fan commanded, the airflow switch (None: offline), and a wall
step (seconds; 0 for none) made before the second's poll."""

_steps = st.lists(
    st.tuples(st.booleans(), st.sampled_from([True, False, None]),
              st.one_of(st.just(0.0), st.just(0.0), st.just(0.0),
                        st.floats(-400 * 86400.0, 400 * 86400.0))),
    min_size=1, max_size=80)


def _verdicts(steps: list[Step], with_steps: bool) -> list[dict[str, tuple[bool, Severity]]]:
    clock = ManualClock()
    sup = _supervisor(clock)
    out = []
    for i, (on, airflow, wall) in enumerate(steps):
        clock.advance(1.0)
        if with_steps and wall:
            clock.step_wall(wall)
        if i % 3 != 2:  # the DI module polled two seconds out of three
            quality = Quality.GOOD if airflow is not None else Quality.COMM_ERROR
            _airflow(sup, clock, airflow, quality)
        result = _by_rule(sup.evaluate({"fan": on}, [_h2_alarm(True)] if i % 7 < 4 else []))
        out.append({rule: (e.active, e.severity) for rule, e in result.items()})
    return out


@settings(max_examples=150, deadline=None)
@given(_steps)
def test_wall_clock_steps_change_no_verdict(steps: list[Step]) -> None:
    """Whatever the wall clock does, the supervisor says what it says with no step at all."""
    assert _verdicts(steps, True) == _verdicts(steps, False)

