"""Which config a start of `roomwarden run` boots, loaded and checked (gateway.supervisor
runs it): the last-known-good if a config was ever flashed, else the installed file; an
installed file edited since its kept copy if it checks, else the copy
(`event=installed_config_broken`); and the kept copy too when the gateway cannot be made from
an installed file that passed its check (`kept_instead`: an audit found configs the check let
through crash the start — under systemd a crash loop with no alarms).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from gateway.config.errors import ConfigErrors
from gateway.config.loaded import LoadedConfig
from gateway.flashing.store import BootChoice, ConfigStore, StoreError
from gateway.flashing.store_files import kept_profiles
from gateway.isolated_check import check_apart

log = logging.getLogger("roomwarden.service")


class BootFailed(RuntimeError):
    pass


def boot_config(store: ConfigStore, factory_path: Path,
                rules_dir: Path | None = None) -> tuple[LoadedConfig, BootChoice]:
    """The config to start with, loaded and checked. A last-known-good that no longer loads
    (a profile it needs was removed by an upgrade) falls back to the installed file. While
    the last-known-good is the kept copy of the installed file (version 0: nothing applied or
    flashed yet), an installed file edited since is booted if it checks, else the copy."""
    choice = store.boot(factory_path)
    for problem in choice.problems:
        log.error("event=config_store_damaged problem=%s", problem)
    if choice.meta.source == "factory" and choice.path != factory_path:
        edited = _edited_installed_file(store, factory_path, rules_dir, choice)
        if edited is not None:
            return edited
    try:  # checked by a child process (gateway.isolated_check): no validator kept here
        loaded = check_apart(choice.path, base_dir=factory_path.parent, rules_dir=rules_dir)
        return loaded, choice
    except ConfigErrors as exc:
        if choice.path == factory_path:
            raise BootFailed(str(exc)) from exc
        kept = _with_kept_profiles(store, choice, factory_path, rules_dir, exc)
        if kept is not None:
            return kept
        log.error("event=lkg_config_unusable version=%d errors=%s; starting the installed "
                  "file", choice.meta.version, exc)
    fallback = store.factory_choice(factory_path)
    try:
        return check_apart(fallback.path, rules_dir=rules_dir), fallback
    except ConfigErrors as exc:
        raise BootFailed(str(exc)) from exc


def _with_kept_profiles(store: ConfigStore, choice: BootChoice, factory_path: Path,
                        rules_dir: Path | None, failed: ConfigErrors
                        ) -> tuple[LoadedConfig, BootChoice] | None:
    """The last-known-good booted with the profiles kept beside it (the ones it was checked
    with and ran on), when a profile file on disk now breaks it — a technician's edit with a
    typo, a profile removed — so a restart or power cut never leaves a gateway that cannot
    start. None if none were kept or it fails with them too."""
    directory = kept_profiles(store.configs, choice.path)
    if directory is None:
        return None
    try:
        loaded = check_apart(choice.path, base_dir=factory_path.parent, rules_dir=rules_dir,
                             profiles_from=directory)
    except ConfigErrors:
        return None
    problem = (f"the profile files on disk break the last-known-good config ({failed}); it "
               f"runs on the profiles kept with it ({directory}): fix the files, then restart "
               "it")
    log.error("event=lkg_booted_with_kept_profiles version=%d errors=%s kept=%s",
              choice.meta.version, failed, directory)
    return loaded, replace(choice, problems=(*choice.problems, problem))


def _edited_installed_file(store: ConfigStore, factory_path: Path, rules_dir: Path | None,
                           kept: BootChoice) -> tuple[LoadedConfig, BootChoice] | None:
    """The installed file, loaded, if it differs from the kept copy `kept` and checks; None
    (boot the copy) if it is the same, or broken — said in the log."""
    try:
        installed = store.factory_choice(factory_path)
    except StoreError as exc:
        reason = str(exc)
    else:
        if installed.meta.sha256 == kept.meta.sha256:
            return None
        try:
            loaded = check_apart(installed.path, base_dir=factory_path.parent,
                                 rules_dir=rules_dir)
        except ConfigErrors as exc:
            reason = str(exc)
        else:
            log.info("event=installed_config_changed path=%s sha256=%s", factory_path,
                     installed.meta.sha256[:12])
            return loaded, replace(installed, recovered=kept.recovered,
                                   interrupted=kept.interrupted, problems=kept.problems)
    _installed_broken(factory_path, reason, kept)
    return None


def _installed_broken(factory_path: Path, reason: str, kept: BootChoice) -> None:
    when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(kept.meta.applied_ns / 1e9))
            if kept.meta.applied_ns else "unknown")
    log.error("event=installed_config_broken path=%s errors=%s; starting instead the config "
              "this gateway last booted and ran from it: version 0 sha256=%s (kept %s, "
              "%s)", factory_path, reason, kept.meta.sha256[:12], when, kept.path)


def kept_instead(store: ConfigStore, factory_path: Path, rules_dir: Path | None,
                 booted: BootChoice, reason: str) -> tuple[LoadedConfig, BootChoice]:
    """The kept copy of the installed file's config, loaded and checked, when the gateway
    could not be made from the booted installed file `booted` although it passed its check
    (`reason`: what failed) — as for an installed file that fails its check
    (`event=installed_config_broken`): a bad edit and a restart must not leave a crash loop
    with no alarms. BootFailed, saying so, if the installed file was not what booted or no
    other copy of it is kept."""
    problem = (f"the config {booted.path} passed its check, but the gateway could not be "
               f"made from it: {reason}")
    if booted.meta.source != "factory" or booted.path != factory_path:
        raise BootFailed(problem)
    kept = store.boot(factory_path)
    if (kept.meta.source != "factory" or kept.path == factory_path
            or kept.meta.sha256 == booted.meta.sha256):
        raise BootFailed(f"{problem}; no other copy of the installed file is kept")
    try:
        loaded = check_apart(kept.path, base_dir=factory_path.parent, rules_dir=rules_dir)
    except ConfigErrors as exc:
        raise BootFailed(f"{problem}; the kept copy {kept.path} fails too: {exc}") from exc
    _installed_broken(factory_path, problem, kept)
    return loaded, replace(kept, recovered=booted.recovered, interrupted=booted.interrupted,
                           problems=booted.problems)
