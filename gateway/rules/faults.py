"""Bindings whose evaluation raised, and the alarms that say so (gateway.rules.engine).

A rule bound to a subject is a detection function. When its evaluation raises — a bug, or a
value no test foresaw (a dew point of a humidity of 5e-324 once took every rule's round with
it) — that one function is out of service, not the gateway's detection: the engine evaluates
every other due binding, keeps the failing one's last good evaluation (an active alarm stays
active and its outputs stay on), and raises `rules.evaluation_failed` (major, no outputs) on
the subject `<rule>@<subject>` (the failing binding's alarm key), in the binding's room, with
the error as its value. At the binding's first good evaluation the alarm returns to normal.

The log has the first failure of an episode with its traceback; repeats are counted, not
logged (a failing binding is tried again at every sample that concerns it and at least every
`FAILED_BINDING_RETRY` seconds). Such an alarm survives a restart in the journal and a config
apply in the alarm manager; the engine that comes next adopts it (`adopt`): it returns to
normal at its binding's first good evaluation, or at once when the new config has no such
binding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from gateway.alarms.types import Evaluation, Severity
from gateway.field.sample import Value
from gateway.records import dataclass

log = logging.getLogger("roomwarden.rules")

EVALUATION_FAILED_RULE = "rules.evaluation_failed"
FAILED_BINDING_RETRY = 1.0
"""Seconds between tries of a failing binding that no sample marks (one that holds a timer
must not wait for a sample to be judged again)."""
MAX_ERROR_TEXT = 200
"""Characters of the error kept as the alarm's value."""
TITLE = "Rule cannot be evaluated: {rule} for {subject}"


@dataclass(slots=True)
class BindingFault:
    rule: str
    subject: str
    room: str | None
    error: str
    since_ns: int
    failures: int = 1


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT - 1] + "…"


def fault_evaluation(rule: str, subject: str, room: str | None, active: bool, value: Value,
                     ts: int) -> Evaluation:
    return Evaluation(rule=EVALUATION_FAILED_RULE, subject=f"{rule}@{subject}", active=active,
                      value=value, severity=Severity.MAJOR, ts=ts,
                      title=TITLE.format(rule=rule, subject=subject), room=room)


class BindingFaults:
    """The failing bindings of one engine, by binding index."""

    __slots__ = ("failing", "orphans")

    def __init__(self) -> None:
        self.failing: dict[int, BindingFault] = {}
        self.orphans: list[str] = []
        """Subjects (`<rule>@<subject>`) of failure alarms adopted from before that no binding
        of this engine has: returned to normal at the next round."""

    def failed(self, index: int, rule: str, subject: str, room: str | None,
               exc: Exception, now_ns: int) -> Evaluation | None:
        """Binding `index` raised `exc`: its alarm's evaluation when that is news (a first
        failure, or another error than before), else None."""
        text = error_text(exc)
        fault = self.failing.get(index)
        if fault is None:
            log.error("event=rule_evaluation_failed rule=%s subject=%s", rule, subject,
                      exc_info=exc)
            self.failing[index] = BindingFault(rule, subject, room, text, now_ns)
            return fault_evaluation(rule, subject, room, True, text, now_ns)
        fault.failures += 1
        if fault.error == text:
            return None
        log.error("event=rule_evaluation_failed rule=%s subject=%s failures=%d", rule, subject,
                  fault.failures, exc_info=exc)
        fault.error = text
        return fault_evaluation(rule, subject, room, True, text, now_ns)

    def recovered(self, index: int, now_ns: int) -> Evaluation:
        """Binding `index`, failing until now, was evaluated: its alarm's return to normal."""
        fault = self.failing.pop(index)
        log.warning("event=rule_evaluation_recovered rule=%s subject=%s failures=%d",
                    fault.rule, fault.subject, fault.failures)
        return fault_evaluation(fault.rule, fault.subject, fault.room, False, None, now_ns)

    def adopt(self, alarms: Iterable[tuple[str, Value]], keys: Sequence[tuple[str, str]],
              rooms: Sequence[str | None]) -> list[int]:
        """Failure alarms (their subject `<rule>@<subject>`, last value) held active from
        before (the journal at a start, the alarm manager at an apply): the indices of this
        engine's bindings they name, now failing until they evaluate; the others become
        orphans."""
        index_of = {f"{rule}@{subject}": i for i, (rule, subject) in enumerate(keys)}
        marked = []
        for alarm_subject, value in alarms:
            index = index_of.get(alarm_subject)
            if index is None:
                if alarm_subject not in self.orphans:
                    self.orphans.append(alarm_subject)
                continue
            if index not in self.failing:
                rule, subject = keys[index]
                self.failing[index] = BindingFault(rule, subject, rooms[index], str(value), 0,
                                                   0)
            marked.append(index)
        return marked

    def clear_orphans(self, now_ns: int) -> list[Evaluation]:
        """The return to normal of every orphan (see `orphans`)."""
        out = []
        for alarm_subject in self.orphans:
            rule, _, subject = alarm_subject.partition("@")
            out.append(fault_evaluation(rule, subject, None, False, None, now_ns))
        self.orphans.clear()
        return out

    def report(self) -> list[dict[str, object]]:
        """The failing bindings, for health and status."""
        return [{"rule": f.rule, "subject": f.subject, "error": f.error,
                 "failures": f.failures} for f in self.failing.values()]
