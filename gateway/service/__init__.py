"""Running under systemd: the sd_notify client (`notify.Notifier`) and the watchdog feeders
(`watchdog.feed_watchdog` for the gateway, `watchdog.feed_watchdog_blocking` for a threaded
service such as the ingest). The units and the install script are in `systemd/`."""

from gateway.service.notify import Notifier

__all__ = ["Notifier"]
