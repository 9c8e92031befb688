"""What the config applier keeps of the config that runs, once it runs: the installed file's
config as the last-known-good (a restart with a broken installed file boots it), and the
device profiles the running config was checked with, beside it in the store (a profile file
broken or removed later cannot stop a restart booting it: gateway.supervisor.boot_config).

Every store write here runs in a worker thread (gateway.offloop), under the applier's lock:
these writes come right after the start, while the bus loops poll (16 fsyncs; with a slow
disk they blocked the loop 18 s in the liveness audit, L4).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway.flashing.store import ConfigStore, StoreError, storage_problem
from gateway.offloop import off_loop

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logging.getLogger("roomwarden.flashing")


class KeepRunning:
    """The applier's part that keeps the running config (gateway.flashing.apply.ConfigApplier
    is the rest)."""

    gateway: Gateway
    store: ConfigStore
    _lock: asyncio.Lock

    async def keep_booted(self, text: str, sha256: str) -> None:
        """The installed file's config booted and ran: keep it as the last-known-good
        (ConfigStore.keep_installed) — unless an apply replaced it meanwhile."""
        async with self._lock:
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
            await self._keep_profiles(sha256)

    async def keep_booted_profiles(self, sha256: str) -> None:
        """The booted last-known-good runs: keep the profiles it runs on beside it — unless an
        apply replaced it meanwhile."""
        async with self._lock:
            if self.gateway.config_sha256 == sha256:
                await self._keep_profiles(sha256)

    async def _keep_profiles(self, sha256: str) -> None:
        """The profiles the running config was checked with, beside it in the store (it is
        the last-known-good). Call it holding the lock."""
        try:
            await off_loop(self.store.keep_profiles, sha256, self.gateway.loaded.profile_texts)
        except (OSError, StoreError) as exc:
            log.error("event=config_profiles_not_kept error=%s", storage_problem(exc))
