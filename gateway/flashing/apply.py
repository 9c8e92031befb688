"""Apply a new config to the running gateway: verify, stage, apply, health-check, then commit it
as last-known-good or roll back — and say what happened at every step.

One path for every source: a signed envelope from `config/set` (MQTT), the local control socket
(`roomwarden config apply`, signed or — if the settings allow — unsigned from a local user) and
SIGHUP (the installed config file changed). Steps, each reported as a ConfigStatus:

    received → (rejected) | staged → applying → applied | rolled_back

- verified before anything is written: size, signature by a trusted key, the gateway it is for,
  no replay and no downgrade (unless the signed envelope says `force`);
- staged in the store (with an `applying` marker: a crash from here on boots the last-known-good);
- validated like `roomwarden check` (schema, references, profiles, rule parameters);
- applied (`Gateway.reconfigure`): alarms in progress carry over through the journal;
- on trial while health-checked (gateway.flashing.health_check: decided as soon as the outcome
  is certain, at most `flashing.health_timeout`): the candidate's own trouble alarms (device
  offline, sensor health, output failures) are held (gateway.flashing.trial);
- committed (the held alarms are raised, at the times they were seen), or rolled back to the
  config that ran before (the held alarms are dropped; one `$config` system event in the alarm
  journal and uplink records `config vN rolled back: <reason>`), with the reasons.

Applies are serialised: a second request waits for the first to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.alarms.events import CONFIG_RULE, EventKind
from gateway.config.bounded import read_bounded
from gateway.config.errors import ConfigErrors
from gateway.config.loaded import LoadedConfig
from gateway.config.section import defaults
from gateway.config.site import FlashingSettings
from gateway.config.yamllimits import DEFAULT_LIMITS
from gateway.contract.wire import ConfigSet, ConfigStatus
from gateway.first_import import FirstImport
from gateway.flashing.envelope import EnvelopeRejected, verify_envelope
from gateway.flashing.health_check import HealthReport, check_health, offline_devices
from gateway.flashing.keep import ConfigKeeper
from gateway.flashing.keys import parse_public_key_line
from gateway.flashing.rejections import RejectionLog, peek
from gateway.flashing.seen import MAX_VERSION
from gateway.flashing.store import ConfigMeta, StoreError, storage_problem
from gateway.flashing.trial_terms import Source, refusal_of, trial_needs
from gateway.isolated_check import check_apart
from gateway.loop_errors import log_failure
from gateway.offloop import off_loop
from gateway.records import dataclass

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logging.getLogger("roomwarden.flashing")

VERIFY_IMPORTS = ("cryptography.exceptions", "cryptography.hazmat.primitives.asymmetric.ed25519")
"""What verifying an envelope's signature imports at its first use (cryptography: about 7 MiB,
30 ms here, more on a Pi; a gateway at rest holds none of it), imported at the first envelope
in a worker thread (gateway.first_import)."""

Progress = Callable[[ConfigStatus], None]
MAX_ERRORS_REPORTED = 20
MAX_ENVELOPES_WAITING = 4
"""`config/set` envelopes that may wait for their turn to be verified behind the one under
way (a technician flashes one at a time; each may be 2 MiB); more are refused `busy`, unread."""
BUSY = "busy"
_BUSY_ERROR = (f"{MAX_ENVELOPES_WAITING} configs already wait to be verified: this one was not "
               "read; flash it again once they are answered")
MAX_NOTE = 1000
"""Longest journal note of a rolled-back config (the reason is cut): the uplink contract's
limit for an alarm event's note."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A config that passed verification, waiting to be staged."""

    text: str
    version: int
    sha256: str
    author: str
    source: Source
    request_id: str | None
    key_id: str | None = None
    envelope: ConfigSet | None = None


def settings_of(loaded: LoadedConfig) -> FlashingSettings:
    return loaded.config.flashing or defaults(FlashingSettings)  # no validator built


class ConfigApplier:
    """Every store write runs in a worker thread (gateway.offloop), under the keeper's lock, so
    a slow disk's fsyncs never stop the bus loops and the rules (keeping the running config,
    from the start: gateway.flashing.keep, whose state this shares)."""

    def __init__(self, keeper: ConfigKeeper, *, base_dir: Path,
                 publish: Progress | None = None) -> None:
        self.keeper = keeper
        self.gateway: Gateway = keeper.gateway
        self.store = keeper.store
        self.base_dir = base_dir
        """Where a staged config's relative paths (profiles_dir) resolve: the installed
        config's directory."""
        self.factory_path = keeper.factory_path
        self.publish = publish
        self._tasks: set[asyncio.Task[ConfigStatus]] = set()
        self.rejections = RejectionLog()
        """Refusals, counted; their log lines rate-limited (a flood of bad `config/set`)."""
        self._verifier = FirstImport(*VERIFY_IMPORTS)
        self._verify_turn = asyncio.Lock()
        """Envelopes are read and verified one at a time, in a worker thread."""
        self._waiting = 0
        """Envelopes waiting for their turn to be verified (at most MAX_ENVELOPES_WAITING)."""

    # --- entry points -------------------------------------------------------------------

    def submit_envelope(self, raw: bytes) -> None:
        """From `config/set` (the uplink's event-loop callback): apply in the background — or,
        with MAX_ENVELOPES_WAITING already waiting for their turn to be verified (a flood),
        refused `busy` at once, unread."""
        if self._waiting >= MAX_ENVELOPES_WAITING:
            self.rejections.rejected_line("flash", None, BUSY, _BUSY_ERROR)
            self._say(None, "rejected", None, code=BUSY, error=_BUSY_ERROR)
            return
        task = asyncio.get_running_loop().create_task(
            self.apply_envelope(raw, source="flash"), name="config-apply")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_failure)

    async def apply_envelope(self, raw: bytes, *, source: Source = "flash",
                             progress: Progress | None = None) -> ConfigStatus:
        settings = settings_of(self.gateway.loaded)
        self._waiting += 1
        try:  # one envelope read and verified at a time, in arrival order, off the loop: up
            await self._verify_turn.acquire()  # to 2 MiB of JSON an attacker shaped (DESIGN 13)
        finally:
            self._waiting -= 1
        try:
            request_id, version = await off_loop(peek, raw)  # (named even if it is broken)
            self._say(progress, "received", request_id, version=version)
            with contextlib.suppress(Exception):  # (failed: verifying imports it, and says so)
                await self._verifier.ready()  # off the loop's thread
            trusted = [parse_public_key_line(line) for line in settings.trusted_keys]
            envelope = await off_loop(
                verify_envelope, raw, gateway_id=self.gateway.loaded.config.gateway.id,
                trusted=trusted, max_bytes=settings.max_bytes)
        except EnvelopeRejected as exc:
            self.rejections.rejected_line(source, request_id, exc.code, exc)
            return self._say(progress, "rejected", request_id, code=exc.code, error=str(exc),
                             version=version)
        finally:  # (the next envelope's turn; this one queues for the apply before it runs)
            self._verify_turn.release()
        candidate = Candidate(text=envelope.config, version=envelope.version,
                              sha256=envelope.sha256, author=envelope.author, source=source,
                              request_id=envelope.id, key_id=envelope.key_id,
                              envelope=envelope)
        return await self._apply(candidate, progress, force=envelope.force)

    async def apply_text(self, text: str, *, author: str, source: Source = "local",
                         progress: Progress | None = None) -> ConfigStatus:
        """An unsigned config from a trusted local channel (the control socket, whose file
        permissions are the authentication, or SIGHUP)."""
        request_id = f"{source}-{secrets.token_hex(6)}"
        self._say(progress, "received", request_id)
        if source == "local" and not settings_of(self.gateway.loaded).allow_local_unsigned:
            return self._say(progress, "rejected", request_id, code="unsigned",
                             error="this gateway accepts only signed configs "
                                   "(flashing.allow_local_unsigned is false)")
        digest = hashlib.sha256(text.encode()).hexdigest()
        candidate = Candidate(text=text, version=0, sha256=digest, author=author,
                              source=source, request_id=request_id)  # numbered when its turn comes
        return await self._apply(candidate, progress, force=False)

    async def reload(self) -> ConfigStatus | None:
        """SIGHUP: apply the installed config file if it changed since it was last read."""
        if self.factory_path is None:
            return None
        try:  # bounded and off the loop: a FIFO or /dev/zero put there must not stall it
            data = await asyncio.to_thread(read_bounded, self.factory_path,
                                           DEFAULT_LIMITS.max_bytes)
            text = data.decode("utf-8")
        except (OSError, ValueError) as exc:  # ValueError: too large, not a file, not UTF-8
            log.error("event=reload_failed path=%s error=%s", self.factory_path, exc)
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.keeper.factory_sha256:
            log.info("event=reload_unchanged path=%s sha256=%s", self.factory_path, digest[:12])
            return None
        status = await self.apply_text(text, author=f"file {self.factory_path}",
                                       source="reload")
        self.keeper.factory_sha256 = digest  # a failed file is not retried until it changes
        # what `systemctl reload` did, for whoever edited the file (the audit saw none)
        log.log(logging.INFO if status.state == "applied" else logging.ERROR,
                "event=reload_%s path=%s sha256=%s code=%s error=%s", status.state,
                self.factory_path, digest[:12], status.code, status.error)
        return status

    # --- the pipeline ---------------------------------------------------------------------

    async def _apply(self, candidate: Candidate, progress: Progress | None, *,
                     force: bool) -> ConfigStatus:
        async with self.keeper.lock:  # one apply at a time; freshness, numbering inside it
            c = candidate
            try:  # a full or read-only state directory: refused, nothing half-written left
                if c.envelope is not None:
                    await off_loop(self.store.check_fresh, c.envelope)
                    await off_loop(self.store.remember, c.envelope)  # a later failure burns it
                    self.keeper.highest = max(self.keeper.highest, c.version)
                    staged = await off_loop(self.store.stage, c.envelope,
                                            ConfigMeta.of_envelope(c.envelope))
                else:
                    highest = max(self.gateway.config_version,
                                  await off_loop(self.store.highest_version))
                    self.keeper.highest = max(self.keeper.highest, highest)
                    if highest >= MAX_VERSION:  # refused before anything is written
                        raise EnvelopeRejected("version_exhausted", _exhausted(highest))
                    c = dataclasses.replace(c, version=highest + 1)
                    await off_loop(self.store.burn, c.version)  # not handed on after a rollback
                    staged = await off_loop(self.store.stage, c.text, ConfigMeta(
                        version=c.version, sha256=c.sha256, source="local", author=c.author,
                        request_id=c.request_id))
            except EnvelopeRejected as exc:
                self.rejections.rejected_line(c.source, c.request_id, exc.code, exc)
                return self._say(progress, "rejected", c.request_id,
                                 c if c.envelope is not None else None, code=exc.code,
                                 error=str(exc))
            except (OSError, StoreError) as exc:
                error = storage_problem(exc)
                log.error("event=config_rejected source=%s id=%s code=storage_error reason=%s",
                          c.source, c.request_id, error)
                return self._say(progress, "rejected", c.request_id, c, code="storage_error",
                                 error=error)
            return await self._apply_locked(c, staged, progress, force=force)

    async def _apply_locked(self, c: Candidate, staged: Path, progress: Progress | None, *,
                            force: bool) -> ConfigStatus:
        gw = self.gateway
        rid = c.request_id
        try:
            # checked by a child process, off the event loop (gateway.isolated_check)
            loaded = await asyncio.to_thread(
                check_apart, staged, base_dir=self.base_dir, name=f"config v{c.version}",
                rules_dir=gw.rules_dir)
        except ConfigErrors as exc:
            await self._discard(rid)
            lines = [str(e) for e in exc.errors][:MAX_ERRORS_REPORTED]
            return self._say(progress, "rejected", rid, c, code="invalid_config",
                             error="\n".join(lines))
        refusal = refusal_of(gw.loaded, loaded, force=force, source=c.source, key_id=c.key_id)
        if refusal is not None:
            await self._discard(rid)
            self.rejections.rejected_line(c.source, rid, *refusal)
            return self._say(progress, "rejected", rid, c, code=refusal[0], error=refusal[1])
        self._say(progress, "staged", rid, c)
        self._say(progress, "applying", rid, c)
        log.info("event=config_applying source=%s id=%s version=%d sha256=%s author=%s",
                 c.source, rid, c.version, c.sha256[:12], c.author)
        gw.begin_trial()  # the candidate's own trouble alarms wait for the verdict
        try:
            outcome = await self._trial(c, loaded)
        except BaseException:
            gw.end_trial(commit=False, retire=False)  # broke off: nothing settled
            raise
        if isinstance(outcome, HealthReport):  # committed
            gw.end_trial(commit=True)  # what was held is raised now, at its own times
            return self._say(progress, "applied", rid, c, error=_notes(outcome))
        gw.end_trial(commit=False)  # dropped: the config that runs judges afresh
        return self._rolled_back(progress, rid, c, *outcome)

    async def _trial(self, c: Candidate, loaded: LoadedConfig) -> HealthReport | tuple[str, str]:
        """Run the candidate, health-check it and commit it (its report), or roll back to the
        config that ran before ((code, error)): the running config and the store agree."""
        gw, rid = self.gateway, c.request_id
        previous, previous_version, previous_sha = gw.loaded, gw.config_version, \
            gw.config_sha256
        explained = offline_devices(gw.bus_loops)
        try:
            await gw.reconfigure(loaded, version=c.version, sha256=c.sha256)
        except Exception as exc:
            log.exception("event=config_apply_failed id=%s", rid)
            if gw.loaded is loaded:  # swapped in, then a part failed after (the uplink, the
                # panel): the previous config is run again whole — its rules, outputs, uplink
                # and panel — as after a failed health check (it had been reported rolled
                # back while the candidate's rules ran, without its panel or uplink)
                log.error("event=config_rolling_back id=%s version=%d code=apply_failed",
                          rid, c.version)
                await gw.reconfigure(previous, version=previous_version, sha256=previous_sha)
            await self._discard(rid)  # (else the candidate's core could not be built:
            return "apply_failed", f"could not start the new config: {exc}"  # the old runs)
        began = gw.clock.monotonic()
        report = await check_health(lambda: gw.bus_loops, explained, lambda: gw.evaluations,
                                    gw.clock, settings_of(loaded).health_timeout,
                                    trial_needs(gw, c.source, previous, loaded))
        took = gw.clock.monotonic() - began
        code, error = "health_check_failed", report.summary()
        if report.ok:
            try:
                await off_loop(self.store.commit)
                self.keeper.note_highest()
            except (OSError, StoreError) as exc:
                if not self._committed(c):  # (a commit that landed before it failed stands)
                    code, error = "commit_failed", ("could not record the config as "
                                                    f"last-known-good: {storage_problem(exc)}")
                    log.error("event=config_commit_failed id=%s version=%d error=%s", rid,
                              c.version, error)
            if code != "commit_failed":
                await self.keeper.keep_profiles(c.sha256)
                log.info("event=config_applied id=%s version=%d health_check_s=%.2f %s", rid,
                         c.version, took, report.summary())
                self._journal(rid, c, f"config v{c.version} applied ({c.source}, by "
                                      f"{c.author}; sha256 {c.sha256[:12]})")
                return report
        log.error("event=config_rolling_back id=%s version=%d health_check_s=%.2f code=%s "
                  "problems=%s", rid, c.version, took, code, error)
        await gw.reconfigure(previous, version=previous_version, sha256=previous_sha)
        await self._discard(rid)
        return code, error

    def _committed(self, c: Candidate) -> bool:
        """The store names the candidate the last-known-good (its commit got that far)."""
        try:
            meta = self.store.active_meta()
        except StoreError:
            return False
        return meta is not None and (meta.version, meta.sha256) == (c.version, c.sha256)

    async def _discard(self, rid: str | None) -> None:
        """Drop the staged config. If even that cannot be written (the disk full), the store
        still names the last-known-good active, and a restart boots it (`interrupted`)."""
        try:
            await off_loop(self.store.discard)
        except (OSError, StoreError) as exc:
            log.error("event=config_discard_failed id=%s error=%s", rid, storage_problem(exc))

    def _rolled_back(self, progress: Progress | None, rid: str | None, c: Candidate,
                     code: str, error: str) -> ConfigStatus:
        """Say `rolled_back`, after the system event that records it (`_journal`)."""
        self._journal(rid, c, f"config v{c.version} rolled back: {error}")
        return self._say(progress, "rolled_back", rid, c, code=code, error=error)

    def _journal(self, rid: str | None, c: Candidate, note: str) -> None:
        """A config applied or rolled back, as a system event in the alarm journal, uplink and
        the incident records of the moment (an apply mid-incident is part of its story)."""
        if len(note) > MAX_NOTE:
            note = note[:MAX_NOTE - 1] + "…"
        try:
            self.gateway.system_event(EventKind.CONFIG, CONFIG_RULE, f"v{c.version}", note)
        except Exception:  # the journal never stops an apply or a rollback
            log.exception("event=config_event_failed id=%s", rid)

    def _say(self, progress: Progress | None, state: str, request_id: str | None,
             candidate: Candidate | None = None, *, code: str | None = None,
             error: str | None = None, version: int | None = None) -> ConfigStatus:
        gw = self.gateway
        cfg = gw.loaded.config.gateway
        status = ConfigStatus.model_validate({
            "site": cfg.site, "gateway": cfg.id,
            "id": request_id, "ts": time.time_ns(), "state": state, "code": code,
            "version": candidate.version if candidate else version,
            "sha256": candidate.sha256 if candidate else None,
            "error": error[:4000] if error else None,
            "active_version": gw.config_version, "active_sha256": gw.config_sha256,
            "highest_accepted": min(MAX_VERSION, max(self.keeper.highest, gw.config_version)),
        })
        if progress is not None:
            progress(status)
        if self.publish is not None:
            try:
                self.publish(status)
            except Exception:
                log.exception("event=config_status_publish_failed")
        return status


def _notes(report: HealthReport) -> str | None:
    return "; ".join(report.notes) if report.notes else None


def _exhausted(highest: int) -> str:
    return (f"no config version is left above the highest accepted ({highest}, the largest "
            "there is): this config cannot be numbered; apply it signed, as a forced "
            "downgrade (`roomwarden config apply FILE --key KEY --version N --force`, or "
            "`roomwarden flash … --version N --force`)")
