"""Where `roomwarden flash` sends a config and under which version, from what the gateway's
retained `config/status` says — read on every site of the gateway's id
(`<root>/+/<gateway>/config/status`), so that a gateway running at another site than the
config names is seen before anything is sent.

- Version: one above the highest the gateway reports accepted (`highest_accepted`; from a
  gateway that does not report it, the highest of its running version and the status's own).
  A version the client would pick within MAX_VERSION_STEP of the end of the version space is
  refused — no real gateway gets there, a forged or damaged status does (one envelope numbered
  there used up every version: the audit) —, and so is a `--version` more than
  MAX_VERSION_STEP above the highest reported (the gateway would refuse it: `version_jump`),
  unless `--force`.
- Site and topic root: a config that moves the gateway to another site or root is refused by
  the gateway (`wrong_site`) unless forced; the client says so before sending, and with
  `--force` sends it where the gateway listens now and follows the answer at both places.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.contract.wire import ConfigStatus
from gateway.flashing.link import FlashError
from gateway.flashing.seen import MAX_VERSION, MAX_VERSION_STEP


def newest(statuses: Iterable[ConfigStatus]) -> ConfigStatus | None:
    """The gateway's current status among retained ones from several sites (one left behind
    by a move to another site is older)."""
    return max(statuses, key=lambda s: s.ts, default=None)


def reported_highest(status: ConfigStatus) -> int:
    """The highest version the gateway reports accepted."""
    if status.highest_accepted is not None:
        return status.highest_accepted
    return max(status.active_version or 0, status.version or 0)


def pick_version(requested: int | None, status: ConfigStatus | None, *,
                 force: bool) -> tuple[int, str | None]:
    """(version to sign, what to say about it); FlashError if it is absurd (nothing sent)."""
    if requested is not None and requested > MAX_VERSION:
        raise FlashError(f"--version {requested} is beyond the largest config version "
                         f"({MAX_VERSION}); nothing was sent")
    if status is None:
        if requested is not None:
            return requested, None
        return 1, "sending version 1"
    highest = reported_highest(status)
    running = ("an unknown version" if status.active_version is None
               else f"version {status.active_version}")
    said = f"the gateway runs {running} (sha256 {short_sha(status.active_sha256)})"
    if highest != (status.active_version or 0):
        said += f", highest accepted {highest}"
    if requested is None:
        version = highest + 1
        if version > MAX_VERSION - MAX_VERSION_STEP:
            raise FlashError(
                f"{said}: numbering this flash {version} would all but use up the config "
                f"versions (the largest is {MAX_VERSION}); no gateway gets there by "
                "flashing — is its config/status forged or damaged? Nothing was sent; give "
                "the version with --version N (the gateway refuses one more than "
                f"{MAX_VERSION_STEP} above its real highest, unless --force)")
        return version, f"{said}; sending version {version}"
    if requested > highest + MAX_VERSION_STEP and not force:
        raise FlashError(f"--version {requested} is more than {MAX_VERSION_STEP} above the "
                         f"highest version the gateway reports accepted ({highest}): it "
                         "would refuse it (version_jump). Nothing was sent; send "
                         f"--version {highest + 1}, or add --force to jump on purpose")
    return requested, f"{said}; sending version {requested}"


def moves(config_site: str, gateway_site: str | None, config_root: str | None,
          addressed_root: str, *, force: bool) -> str | None:
    """What the config moves (site, topic root) from where the gateway is addressed, to say
    before sending; FlashError without `force` (the gateway would refuse it: `wrong_site`)."""
    changes = []
    if gateway_site is not None and gateway_site != config_site:
        changes.append(f"from site {gateway_site} (where it reports its config/status) to "
                       f"site {config_site}")
    if config_root is not None and config_root != addressed_root:
        changes.append(f"from topic root {addressed_root} (--root) to {config_root} (the "
                       "config's uplink.root)")
    if not changes:
        return None
    what = "this config moves the gateway " + " and ".join(changes)
    if not force:
        raise FlashError(f"{what}: every topic of the gateway would move, so it refuses that "
                         "(wrong_site) unless the flash is signed with --force. Nothing was "
                         "sent; correct the file, or add --force to move it on purpose")
    return (f"{what} (--force): sending it where the gateway listens now, following the "
            "answer at both places")


def short_sha(sha: str | None) -> str:
    """A SHA-256 as a status line shows it (12 hex digits)."""
    return sha[:12] if sha else "?"
