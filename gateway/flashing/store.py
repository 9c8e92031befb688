"""The gateway's config store: the last-known-good config, the one before it, a staged one
being tried, and what it has seen — crash-safe.

Layout of the store directory (in the gateway's state directory, e.g. `<state>/config`)::

    state.json                  the single authority, replaced atomically:
                                {"v": 1, "active": GEN|null, "previous": GEN|null,
                                 "staged": GEN|null, "applying": bool}
    configs/GEN/config.yaml     one generation: the YAML text, written once
    configs/GEN/meta.json       its ConfigMeta (version, sha256, author, key_id, applied_ns,
                                source, request_id); rewritten (atomically) only at commit
    seen.json                   {"v": 1, "highest": N, "digests": [...], "forced": [[digest,
                                ts], ...], "forced_floor": ts}: the highest version ever
                                accepted, the last 1000 envelope digests processed, the last
                                1000 *forced* envelopes (kept apart, so no number of ordinary
                                envelopes pushes them out) and the newest `ts` of any forced
                                envelope forgotten since
    active, previous            convenience symlinks to configs/GEN (not authoritative)

Replay protection (what `seen.json` remembers and refuses) is gateway.flashing.seen's; the
records (`ConfigMeta`, `BootChoice`, `state.json`) are gateway.flashing.meta's.

Every file is private (0600, directories 0700, whatever the umask): configs hold panel
password hashes. GEN is `v<version>-<sha256[:12]>-<ns>`. Every file is written to a temporary
name, fsynced, renamed into place and its directory fsynced; a generation directory is
complete before `state.json` names it. So a crash (SIGKILL, power cut) at any instant leaves
`state.json` naming either the old or the new generation, each complete and hash-consistent.

Until a config is applied or flashed, the active generation is a copy of the installed file
the gateway booted and ran (version 0, source `factory`, `keep_installed()`), so a restart with
a broken installed file still has a config to run.

`applying` is set by `stage()` and cleared by `commit()` / `discard()` in the same atomic write
that moves the generations. If the process dies in between, `boot()` finds it set, drops the
staged config and starts the last-known-good one, reporting `recovered=True`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.bounded import read_bounded
from gateway.config.yamllimits import DEFAULT_LIMITS
from gateway.flashing.meta import (
    BootChoice,
    ConfigMeta,
    Source,
    StoreError,
    StoreState,
    sha256_text,
    storage_problem,
)
from gateway.flashing.seen import SEEN_DIGESTS, SEEN_FORCED, Seen
from gateway.flashing.store_files import listdir, remove_tree, write_generation, write_kept_profiles
from gateway.storage import atomic_write, narrow_tree, private_dir

if TYPE_CHECKING:  # the envelope model is pydantic: imported at the first config/set (issue 15)
    from gateway.contract.configmsg import ConfigSet

__all__ = ["SEEN_DIGESTS", "SEEN_FORCED", "BootChoice", "ConfigMeta", "ConfigStore", "Source",
           "StoreError", "sha256_text", "storage_problem"]

log = logging.getLogger("roomwarden.flashing")


class ConfigStore:
    """The config directory of one gateway (see the module docstring). Not thread-safe: one
    caller at a time (the config applier's lock; its calls run in worker threads)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.configs = root / "configs"
        private_dir(self.configs)
        if narrow_tree(root):  # written by an older version with the umask's modes
            log.info("event=config_store_narrowed dir=%s (files 0600, directories 0700)", root)
        self._state_path = root / "state.json"
        self._seen_path = root / "seen.json"

    # ---------------------------------------------------------------- reading

    def _state(self) -> StoreState:
        try:
            return StoreState.from_json(self._state_path.read_bytes())
        except FileNotFoundError:
            return StoreState()
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self._state_path} is unreadable: {exc}") from exc

    def _write_state(self, state: StoreState) -> None:
        atomic_write(self._state_path, state.to_json())

    def _write_state_or_drop(self, state: StoreState, name: str) -> None:
        """Write `state`, which names the new generation `name`; if that fails (a full or
        read-only disk), remove the generation: nothing half-written is left."""
        try:
            self._write_state(state)
        except BaseException:
            remove_tree(self.configs / name)
            raise

    def _read_generation(self, name: str) -> tuple[str, ConfigMeta]:
        """Text and meta of a generation, checked against each other; ValueError if damaged."""
        directory = self.configs / name
        meta = ConfigMeta.from_json((directory / "meta.json").read_bytes())
        data = (directory / "config.yaml").read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.sha256:
            raise ValueError(f"configs/{name}/config.yaml does not match its sha256")
        return data.decode("utf-8"), meta

    def active_meta(self) -> ConfigMeta | None:
        """The last-known-good config's meta, None while the factory config runs."""
        state = self._state()
        if state.active is None:
            return None
        try:
            return self._read_generation(state.active)[1]
        except (OSError, ValueError):
            return None

    def previous_meta(self) -> ConfigMeta | None:
        state = self._state()
        if state.previous is None:
            return None
        try:
            return self._read_generation(state.previous)[1]
        except (OSError, ValueError):
            return None

    def staged_meta(self) -> ConfigMeta | None:
        state = self._state()
        if state.staged is None:
            return None
        try:
            return self._read_generation(state.staged)[1]
        except (OSError, ValueError):
            return None

    @property
    def applying(self) -> bool:
        return self._state().applying

    # ---------------------------------------------------------------- boot

    def boot(self, factory_path: Path) -> BootChoice:
        """The config to start with: the last-known-good one (the previous if the active is
        damaged), else the factory file as version 0. A staged config never survives a
        restart: if `applying` was set the process died mid-apply (`recovered=True`)."""
        problems: list[str] = []
        try:
            state = self._state()
        except StoreError as exc:  # not from a crash (writes are atomic): damage
            problems.append(str(exc))
            state = self._rebuild_state()
            problems.append(f"recovered the newest committed config: {state.active}")
        interrupted: ConfigMeta | None = None
        recovered = state.applying
        if state.staged is not None:
            try:
                interrupted = self._read_generation(state.staged)[1]
            except (OSError, ValueError):
                interrupted = None
        if state.staged is not None or state.applying:
            state = replace(state, staged=None, applying=False)
            self._write_state(state)
        choice: BootChoice | None = None
        for slot in ("active", "previous"):
            name = getattr(state, slot)
            if name is None:
                continue
            try:
                text, meta = self._read_generation(name)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                problems.append(f"{slot} config configs/{name} is damaged: {exc}")
                continue
            if slot == "previous":  # the active one was damaged: the previous becomes it
                state = replace(state, active=name, previous=None)
                self._write_state(state)
            choice = BootChoice(text=text, path=self.configs / name / "config.yaml",
                                meta=meta, recovered=recovered, interrupted=interrupted,
                                problems=tuple(problems))
            break
        if choice is None:
            if state.active is not None or state.previous is not None:
                state = replace(state, active=None, previous=None)
                self._write_state(state)
            choice = replace(self.factory_choice(factory_path), recovered=recovered,
                             interrupted=interrupted, problems=tuple(problems))
        self._collect(state)
        self._link(state)
        return choice

    def _rebuild_state(self) -> StoreState:
        """A state from the generations on disk: the two most recently committed ones."""
        committed: list[tuple[int, str]] = []
        for entry in listdir(self.configs):
            if entry.name.startswith("."):
                continue
            try:
                _text, meta = self._read_generation(entry.name)
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if meta.applied_ns is not None:
                committed.append((meta.applied_ns, entry.name))
        committed.sort(reverse=True)
        names = [name for _ns, name in committed]
        state = StoreState(active=names[0] if names else None,
                       previous=names[1] if len(names) > 1 else None)
        self._write_state(state)
        return state

    @staticmethod
    def factory_choice(factory_path: Path) -> BootChoice:
        """The factory (installed) config file as version 0, whatever the store holds (for a
        last-known-good that no longer loads). StoreError if it cannot be read."""
        try:  # bounded: a FIFO or a device there must not hang or flood the boot
            text = read_bounded(factory_path, DEFAULT_LIMITS.max_bytes).decode("utf-8")
        except (OSError, ValueError) as exc:  # too large, not a regular file, not UTF-8
            raise StoreError(f"the factory config {factory_path} is unreadable: {exc}"
                             ) from exc
        meta = ConfigMeta(version=0, sha256=sha256_text(text), source="factory")
        return BootChoice(text=text, path=factory_path, meta=meta)

    # ---------------------------------------------------------------- freshness

    def _seen(self) -> Seen:
        try:
            return Seen.from_json(self._seen_path.read_bytes())
        except FileNotFoundError:
            return Seen()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self._seen_path} is unreadable: {exc}") from exc

    def highest_version(self) -> int:
        """The highest version ever accepted (0: none yet)."""
        active = self.active_meta()
        return max(self._seen().highest, active.version if active else 0)

    def check_fresh(self, envelope: ConfigSet) -> None:
        """EnvelopeRejected `replayed` or `downgrade` (gateway.flashing.seen.Seen.check_fresh)."""
        seen = self._seen()
        active = self.active_meta()
        seen.check_fresh(envelope, active.version if active else 0)

    def remember(self, envelope: ConfigSet, *, accepted: bool = True) -> None:
        """Record an envelope as processed (its digest; and, if `accepted`, its version as the
        highest accepted). Call it once the envelope passed verify_envelope and check_fresh,
        before staging — a later failure still burns the version."""
        seen = self._seen()
        seen.remember(envelope, accepted=accepted)
        atomic_write(self._seen_path, seen.to_json())

    def burn(self, version: int) -> None:
        """Record a locally numbered `version` as used: a rolled-back one is not handed on."""
        seen = self._seen()
        if version > seen.highest:
            seen.highest = version
            atomic_write(self._seen_path, seen.to_json())

    # ---------------------------------------------------------------- stage / commit

    def stage(self, source: ConfigSet | str, meta: ConfigMeta | None = None) -> Path:
        """Write a config to try and mark the store `applying`; returns the staged file's
        path (load it from there). A ConfigSet brings its own meta (source `flash`); text
        needs `meta` (e.g. source `local`). Replaces anything staged before."""
        if not isinstance(source, str):  # a ConfigSet (not imported here: issue 15)
            text = source.config
            meta = meta or ConfigMeta.of_envelope(source)
        else:
            text = source
            if meta is None:
                raise StoreError("staging text needs its ConfigMeta")
        meta = replace(meta, applied_ns=None)
        name = write_generation(self.configs, text, meta)
        state = self._state()
        old_staged = state.staged
        state = replace(state, staged=name, applying=True)
        self._write_state_or_drop(state, name)
        if old_staged is not None:
            self._collect(state)
        return self.configs / name / "config.yaml"

    def commit(self, *, now_ns: int | None = None) -> ConfigMeta:
        """The staged config becomes the last-known-good (the old one becomes previous);
        clears `applying`. Returns the new active meta."""
        state = self._state()
        if state.staged is None:
            raise StoreError("nothing is staged")
        name = state.staged
        try:
            _text, meta = self._read_generation(name)
        except (OSError, ValueError) as exc:
            raise StoreError(f"the staged config is damaged: {exc}") from exc
        meta = replace(meta, applied_ns=time.time_ns() if now_ns is None else now_ns)
        atomic_write(self.configs / name / "meta.json", meta.to_json())
        new = StoreState(active=name, previous=state.active if state.active != name
                     else state.previous, staged=None, applying=False)
        self._write_state(new)
        self._collect(new)
        self._link(new)
        return meta

    def keep_profiles(self, sha256: str, texts: dict[str, str]) -> bool:
        """Keep beside the last-known-good config (if its sha256 is `sha256`) the profile texts
        it was checked with, replacing those kept: a profile file broken or removed later does
        not stop the gateway booting it (gateway.booting.boot_config). False if the active
        config is another one."""
        state = self._state()
        if state.active is None:
            return False
        try:
            meta = self._read_generation(state.active)[1]
        except (OSError, ValueError, UnicodeDecodeError):
            return False
        if meta.sha256 != sha256:
            return False
        write_kept_profiles(self.configs / state.active, texts)
        return True

    def keep_installed(self, text: str, *, now_ns: int | None = None) -> ConfigMeta | None:
        """Keep the installed file's config, which the gateway booted and ran (version 0), as
        the last-known-good: a restart with a broken installed file then boots this copy
        (gateway.booting.boot_config). Only while no applied or flashed config is the
        last-known-good (those keep their meaning). Returns the kept meta, None if nothing
        changed (the same config is kept already, or another one is the last-known-good)."""
        state = self._state()
        current = self.active_meta()
        if state.active is not None and (current is None or current.source != "factory"):
            return None
        meta = ConfigMeta(version=0, sha256=sha256_text(text), source="factory",
                          author="installed file",
                          applied_ns=time.time_ns() if now_ns is None else now_ns)
        if current is not None and current.sha256 == meta.sha256:
            return None
        name = write_generation(self.configs, text, meta)
        new = replace(state, active=name,
                      previous=state.active if state.active is not None else state.previous)
        self._write_state_or_drop(new, name)
        self._collect(new)
        self._link(new)
        return meta

    def discard(self) -> ConfigMeta | None:
        """Drop the staged config (rollback: the active one stays); clears `applying`.
        Returns the dropped config's meta, if any."""
        state = self._state()
        dropped = self.staged_meta()
        if state.staged is None and not state.applying:
            return None
        new = replace(state, staged=None, applying=False)
        self._write_state(new)
        self._collect(new)
        return dropped

    def active_text(self) -> tuple[str, ConfigMeta] | None:
        state = self._state()
        if state.active is None:
            return None
        try:
            return self._read_generation(state.active)
        except (OSError, ValueError) as exc:
            raise StoreError(f"the active config is damaged: {exc}") from exc

    # ---------------------------------------------------------------- housekeeping

    def _collect(self, state: StoreState) -> None:
        """Remove generations and temporary files nothing refers to."""
        keep = {state.active, state.previous, state.staged}
        for entry in listdir(self.configs):
            if entry.name not in keep:
                remove_tree(entry)
        for entry in listdir(self.root):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    entry.unlink()

    def _link(self, state: StoreState) -> None:
        """Best-effort convenience symlinks `active` and `previous` for people."""
        for slot in ("active", "previous"):
            name = getattr(state, slot)
            link = self.root / slot
            with contextlib.suppress(OSError):
                if name is None:
                    if link.is_symlink():
                        link.unlink()
                    continue
                tmp = self.root / f".{slot}.link.tmp"
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                os.symlink(Path("configs") / name, tmp)
                os.replace(tmp, link)

