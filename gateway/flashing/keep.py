"""What the gateway keeps of the config that runs, from its start: the installed file's config
as the last-known-good (a restart with a broken installed file boots it), and the device
profiles the running config was checked with, beside it in the store (a profile file broken or
removed later cannot stop a restart booting it: gateway.booting.boot_config).

`ConfigKeeper` also holds what the config applier (gateway.flashing.apply) needs from the
start: the store's lock, the highest version accepted and the installed file's digest as it
was read. The applier is made at the first apply (a running gateway does not hold its modules
until then, issue 15) and shares them.

Every store write here runs in a worker thread (gateway.offloop), under the lock: these writes
come right after the start, while the bus loops poll (16 fsyncs; with a slow disk they blocked
the loop 18 s in the liveness audit, L4).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.bounded import file_sha256
from gateway.config.yamllimits import DEFAULT_LIMITS
from gateway.flashing.store import ConfigStore, StoreError, storage_problem
from gateway.offloop import off_loop

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logging.getLogger("roomwarden.flashing")


class ConfigKeeper:
    """The running config's keeper, and the state it shares with the config applier."""

    def __init__(self, gateway: Gateway, store: ConfigStore, *,
                 factory_path: Path | None = None) -> None:
        self.gateway = gateway
        self.store = store
        self.lock = asyncio.Lock()
        """One writer of the store at a time: keeping, and each apply (gateway.flashing.apply)."""
        self.factory_path = factory_path
        self.factory_sha256 = (file_sha256(factory_path, DEFAULT_LIMITS.max_bytes)
                               if factory_path else None)
        """The installed file's digest as last read (now, then at each reload): a reload
        applies the file only if it changed since."""
        self.highest = 0
        """The highest version accepted (ConfigStatus.highest_accepted), kept current."""
        self.note_highest()

    def note_highest(self) -> None:
        """Read the highest version accepted from the store (at start and after a commit)."""
        try:
            self.highest = max(self.highest, self.store.highest_version())
        except (OSError, StoreError) as exc:  # the status then says what it knew before
            log.error("event=config_highest_unreadable error=%s", storage_problem(exc))

    async def keep_booted(self, text: str, sha256: str) -> None:
        """The installed file's config booted and ran: keep it as the last-known-good
        (ConfigStore.keep_installed) — unless an apply replaced it meanwhile."""
        async with self.lock:
            if (self.gateway.config_version, self.gateway.config_sha256) != (0, sha256):
                return
            try:
                meta = await off_loop(self.store.keep_installed, text)
            except (OSError, StoreError) as exc:
                log.error("event=installed_config_not_kept error=%s; a restart needs the "
                          "installed file to be valid", storage_problem(exc))
                return
            if meta is not None:
                log.info("event=installed_config_kept sha256=%s: a restart with a broken "
                         "installed file boots this one", sha256[:12])
            await self.keep_profiles(sha256)

    async def keep_booted_profiles(self, sha256: str) -> None:
        """The booted last-known-good runs: keep the profiles it runs on beside it — unless an
        apply replaced it meanwhile."""
        async with self.lock:
            if self.gateway.config_sha256 == sha256:
                await self.keep_profiles(sha256)

    async def keep_profiles(self, sha256: str) -> None:
        """The profiles the running config was checked with, beside it in the store (it is
        the last-known-good). Call it holding the lock."""
        try:
            await off_loop(self.store.keep_profiles, sha256, self.gateway.loaded.profile_texts)
        except (OSError, StoreError) as exc:
            log.error("event=config_profiles_not_kept error=%s", storage_problem(exc))
