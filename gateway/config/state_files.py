"""What the gateway keeps in its state directory (`roomwarden run --state-dir`, systemd's
StateDirectory, else /var/lib/roomwarden or ./var), named relative to it: a setting that names
a file there — the uplink's `outbox.path` — must not land on one of them.

An audit pointed `uplink.outbox.path` at `config/state.json`: the check said ok, the outbox
opened the config store's state as a damaged outbox, renamed it aside and put an SQLite file
in its place (a local apply then failed its commit, and the next start had to recover the
store). `alarms.sqlite` would have put the outbox's tables into the alarm journal.

The modules that own these files name them themselves (gateway.daemon, gateway.supervisor,
gateway.rules.warm, gateway.service.instance, gateway.control, gateway.recorder.hook);
tests/uplink/test_outbox_path.py holds this list to their names and to what a running
gateway's state directory holds. Plain Python: the site config's check uses it.
"""

from __future__ import annotations

import posixpath

OWN_DIRS = {
    "config": "the config store (gateway.flashing.store)",
    "incidents": "the flight recorder's incident store (gateway.recorder.store)",
}
"""Directories whose whole content belongs to one store."""
OWN_FILES = {
    "alarms.sqlite": "the alarm journal",
    "operator/commands.sqlite": "the replay memory of signed commands",
    "rate_windows.bin": "the rate windows' warm-start file (gateway.rules.warm)",
    "gateway.lock": "the state directory's lock (gateway.service.instance)",
    "control.sock": "the default control socket (gateway.control)",
}
"""Files, with the SQLite files beside them (`SIDECARS`)."""
SIDECARS = ("", "-wal", "-shm", "-journal")


def owner_of(relative: str) -> str | None:
    """What of the gateway's own state the path `relative` (to the state directory, `/` as
    the separator) would land on: one of its files or the files SQLite keeps beside it, a
    directory one of them is in, anything inside `OWN_DIRS`, or the state directory itself.
    None if nothing — also for an absolute path or one that leaves the state directory
    (`../…`), which only the gateway, knowing where its state directory is, can judge."""
    if relative.startswith("/"):
        return None
    parts = tuple(p for p in posixpath.normpath(relative).split("/") if p)
    if not parts or parts == (".",):
        return "the state directory itself"
    if parts[0] == "..":
        return None
    if parts[0] in OWN_DIRS:
        return OWN_DIRS[parts[0]]
    for name, what in OWN_FILES.items():
        own = tuple(name.split("/"))
        if parts == own[:len(parts)] and len(parts) < len(own):
            return f"the directory of {what} ({name})"
        if parts[:-1] == own[:-1] and any(parts[-1] == own[-1] + s for s in SIDECARS):
            return f"{what} ({name})"
    return None
