"""`make demo` / `roomwarden demo`: the whole picture on one machine, loopback only.

A simulated equipment room, the gateway polling it with its local panel, and (unless
`--no-uplink`) a Mosquitto of its own that the gateway's uplink publishes to, a VictoriaMetrics
of its own if installed, and the central ingest writing what the broker receives into it. It
prints a guide (panel URL, the scripted scene, `roomwarden simctl` commands with the real
control port, how to watch the siren coil and query the database), plays a short scene (a
confirmed fire to acknowledge, a device going silent) and stops everything on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from gateway import demo_screen
from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.profile import ModbusProfile
from gateway.config.section import replaced
from gateway.config.site import PanelUser
from gateway.contract.wire import DEFAULT_ROOT
from gateway.daemon import Gateway
from gateway.dashboards.guide import grafana_guide
from gateway.field.points import bind_points
from gateway.ingest.service import IngestService
from gateway.ingest.settings import IngestSettings
from gateway.localservices import LocalMosquitto, LocalVictoria, ServiceError
from gateway.panel.passwords import hash_password
from gateway.records import dataclass, field
from gateway.rules.config import default_rules_dir
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.runner import describe, write_atomically
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.uplink.settings import ExceptionSettings, UplinkSettings

Step = tuple[float, str, Callable[[SimulatedSite], None]]


def _points_by_quantity(loaded: LoadedConfig, quantity: str) -> list[tuple[str, str]]:
    """(point id, room) of every point (or flag) with `quantity`, in config order."""
    found = []
    for device in loaded.config.devices:
        profile = loaded.profiles.get(device.profile)
        if profile is None or not device.enabled:
            continue
        for point in bind_points(device, profile):
            if point.quantity == quantity:
                found.append((point.id, device.room))
            found.extend((flag.id, device.room) for flag in point.flags
                         if flag.quantity == quantity)
    return found


def demo_script(loaded: LoadedConfig) -> list[Step]:
    """A short scene on the demo site: smoke in one detector, then in a second one (a
    confirmed fire: siren and strobe, to acknowledge in the panel); then a device that stops
    answering while the rest of its bus keeps reading."""
    script: list[Step] = []
    smoke = _points_by_quantity(loaded, "smoke")
    rooms: dict[str, list[str]] = {}
    for point, room in smoke:
        rooms.setdefault(room, []).append(point)
    pair = next((points[:2] for points in rooms.values() if len(points) >= 2), None)
    if pair:
        first, second = pair
        script += [
            (20.0, f"smoke at {first}: a single-detector alert",
             lambda site: site.set_signal(first, Constant(value=True))),
            (35.0, f"smoke at {second} too: confirmed fire (two detectors) - siren and strobe "
                   "on; log in to the panel and acknowledge: the siren stops, the strobe stays",
             lambda site: site.set_signal(second, Constant(value=True))),
            (120.0, "the smoke clears: the confirmed fire is latching - it stays, the strobe "
                    "on, until a logged-in user presses Reset on its card",
             lambda site: _release(site, first, second)),
        ]
    silent = silent_device(loaded)
    if silent is not None:
        script += [
            (140.0, f"{silent} stops answering: OFFLINE after 3 polls while the other devices "
                    "of its bus keep reading",
             lambda site: site.set_fault(silent, Fault(mode=FaultMode.NO_REPLY))),
            (180.0, f"{silent} answers again: online at its first good poll - an offline "
                    "device is retried with a growing back-off, so within about half a minute",
             lambda site: site.set_fault(silent, Fault(mode=FaultMode.NONE))),
        ]
    return script


def with_demo_user(loaded: LoadedConfig) -> LoadedConfig:
    """The demo's panel on loopback, with a user `demo` (password `demo`) if none is set."""
    panel = loaded.config.panel
    users = panel.users or (PanelUser(name="demo", password_hash=hash_password("demo")),)
    config = replaced(loaded.config, panel=replaced(panel, users=users, bind="127.0.0.1"))
    return dataclasses.replace(loaded, config=config)


def with_local_uplink(loaded: LoadedConfig, broker_port: int) -> LoadedConfig:
    """The uplink pointed at the demo's own broker on loopback (MQTT 5, no TLS, no login), with
    a 10 s heartbeat so that readings flow visibly even when nothing changes."""
    root = loaded.config.uplink.root if loaded.config.uplink is not None else DEFAULT_ROOT
    uplink = UplinkSettings(
        broker="127.0.0.1", port=broker_port, protocol="5", root=root,
        client_id=f"roomwarden-demo-{loaded.config.gateway.id}"[:64],
        reconnect_min=0.5, reconnect_max=5.0,
        exception=ExceptionSettings(max_interval=10.0))
    return dataclasses.replace(loaded, config=replaced(loaded.config, uplink=uplink))


def ingest_settings(broker_port: int, database_url: str, workdir: Path,
                    root: str = DEFAULT_ROOT) -> IngestSettings:
    """The central ingest reading the demo's broker and writing to the demo's database."""
    return IngestSettings.model_validate({
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "protocol": "5",
                 "client_id": "roomwarden-demo-ingest", "root": root},
        "influx": {"url": database_url, "token": "demo", "org": "demo", "bucket": "roomwarden",
                   "store": "victoriametrics",  # alarm strings as alarm_history labels
                   "batch_size": 1000, "flush_interval": "500ms", "retry_max_wait": "2s"},
        "dead_letter": str(workdir / "dead-letter.jsonl"),
        "catalog_store": str(workdir / "catalogs.sqlite")})


def _release(site: SimulatedSite, *points: str) -> None:
    for point in points:
        site.release(point)


# --- the local services ------------------------------------------------------------------


@dataclass
class Backend:
    """What runs behind the gateway: broker, database and ingest (each may be absent)."""

    broker: LocalMosquitto | None = None
    database: LocalVictoria | None = None
    ingest: IngestService | None = None
    notes: list[str] = field(default_factory=list)
    """Why a part is missing, for the guide."""


def start_backend(workdir: Path, stack: contextlib.ExitStack, root: str) -> Backend:
    """Mosquitto, then VictoriaMetrics and the ingest if possible; `stack` stops them in the
    reverse order (ingest first, broker last). A missing part is a note, not an error."""
    backend = Backend()
    broker = LocalMosquitto(workdir / "mosquitto")
    try:
        broker.start()
    except (ServiceError, OSError) as exc:
        backend.notes.append(f"no uplink: {exc}")
        return backend
    stack.callback(broker.stop)
    backend.broker = broker
    database = LocalVictoria(workdir / "victoria-metrics")
    try:
        database.start()
    except (ServiceError, OSError) as exc:
        backend.notes.append(f"no database, so the ingest is skipped (the gateway still "
                             f"publishes to the broker): {exc}")
        return backend
    stack.callback(database.stop)
    backend.database = database
    ingest = IngestService(ingest_settings(broker.port, database.url, workdir / "ingest", root))
    ingest.start()
    stack.callback(_stop_ingest, ingest)
    backend.ingest = ingest
    return backend


def _stop_ingest(ingest: IngestService, drain: float = 2.0) -> None:
    """Give the ingest a moment to write what it holds (the gateway's last messages), then stop
    it; whatever is left stays unacknowledged (and dies with the broker: a demo)."""
    deadline = time.monotonic() + drain
    while ingest.status()["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    ingest.stop()


# --- what the terminal shows -------------------------------------------------------------


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _roomwarden() -> str:
    """How to run `roomwarden` from another terminal in this directory."""
    script = Path(sys.executable).parent / "roomwarden"
    if shutil.which("roomwarden") == str(script):
        return "roomwarden"
    if script.exists():
        return _relative(script)
    return f"{sys.executable} -m gateway"


def _first(loaded: LoadedConfig, quantity: str) -> str | None:
    found = _points_by_quantity(loaded, quantity)
    return found[0][0] if found else None


def guide(loaded: LoadedConfig, *, panel_port: int, control_port: int, backend: Backend,
          script: list[Step], silent: str | None) -> str:
    """The demo's guide: where everything is, what the scene does, how to do it by hand."""
    rw = _roomwarden()

    def simctl(command: dict[str, object]) -> str:
        return f"    {rw} simctl {control_port} '{json.dumps(command)}'"

    cfg = loaded.config
    out = ["", "=" * 78, f"RoomWarden demo: gateway {cfg.gateway.id} at {cfg.gateway.site}",
           "everything runs on this machine, on 127.0.0.1 only", "",
           f"  local panel   http://127.0.0.1:{panel_port}/   (user demo, password demo)",
           f"  simulator     control port 127.0.0.1:{control_port} ({rw} simctl)"]
    if backend.broker is not None:
        out.append(f"  MQTT broker   mosquitto on 127.0.0.1:{backend.broker.port} "
                   f"(pid {backend.broker.pid}); the gateway's uplink publishes to it")
    if backend.database is not None:
        out.append(f"  database      VictoriaMetrics at {backend.database.url} "
                   f"(pid {backend.database.pid}); the ingest writes what the broker gets")
    out += [textwrap.fill(note, 98, initial_indent="  note: ", subsequent_indent=" " * 8)
            for note in backend.notes]
    if script:
        out += ["", "The scene (seconds after start):"]
        out += [textwrap.fill(text, 98, initial_indent=f"  at {at:>3.0f} s  ",
                              subsequent_indent=" " * 12) for at, text, _ in script]
    smoke = [p for p, _ in _points_by_quantity(loaded, "smoke")][:2]
    h2 = _first(loaded, "h2_lel")
    out += ["", "Do it yourself, from another terminal in this directory:"]
    if len(smoke) == 2:
        out += ["  smoke in both detectors of a room (a confirmed fire: siren and strobe):",
                *(simctl({"cmd": "set", "point": p, "signal": True}) for p in smoke),
                "  and clear it again (back to the simulated default):",
                *(simctl({"cmd": "release", "point": p}) for p in smoke)]
    if h2:
        out += ["  hydrogen at 30 %LEL (alarm after 2 s: siren, fan on, charging stopped):",
                simctl({"cmd": "set", "point": h2, "signal": 30}),
                "  a slow build-up instead (warning and fan at 10 %LEL, alarm at 25 %LEL):",
                simctl({"cmd": "set", "point": h2,
                        "signal": {"kind": "ramp", "start": 1, "end": 40, "duration": 120}})]
    if silent:
        out += [f"  {silent} stops answering, then comes back:",
                simctl({"cmd": "fault", "device": silent, "mode": "no_reply"}),
                simctl({"cmd": "fault", "device": silent, "mode": "none"})]
    out += ["  every point and device:", simctl({"cmd": "list"})]
    drills = default_rules_dir() / "drills"
    if drills.is_dir():
        out += ["  the scripted drills (each on a simulated site of its own, in simulated time; "
                "not this demo):", f"    {rw} drill {_relative(drills)}"]
    sirens = [o for o in cfg.outputs if o.role == "siren"]
    if sirens:
        siren = sirens[0]
        out += ["", f"Watch the siren: the readout's `outputs:` line shows {siren.id} and its "
                    f"coil {siren.device}.{siren.point};",
                "  a `*** ... siren` line is printed the moment it changes, and the relay "
                "module itself says:",
                simctl({"cmd": "get", "point": f"{siren.device}.{siren.point}"}),
                '  ("read": true = the coil is energised; acknowledge in the panel and it '
                "drops)"]
    if backend.database is not None:
        out += ["", *grafana_guide(backend.database.url, cfg.gateway.site)]
    out += ["", "Stop with Ctrl-C: the gateway (its outbox committed) and every service above "
                "stop, in order;", "the temporary files go.", "=" * 78, ""]
    return "\n".join(out)


def outputs_line(gateway: Gateway) -> str:
    """The local alarm outputs as the relay module reports them: `siren-3f ON (do1 energised)`."""
    items = []
    for output in gateway.loaded.config.outputs:
        coil = gateway.latest.latest.get(f"{output.device}.{output.point}")
        if coil is None or not isinstance(coil.value, bool):
            items.append(f"{output.id} ?")
            continue
        on = coil.value == output.on_value
        items.append(f"{output.id} {'ON' if on else 'off'} ({output.point} "
                     f"{'energised' if coil.value else 'released'})")
    return "outputs: " + ("  ".join(items) if items else "none configured")


def backend_line(gateway: Gateway, backend: Backend) -> str | None:
    if gateway.uplink is None:
        return None
    status = gateway.uplink.status()
    text = (f"uplink: {'connected' if status.connected else 'disconnected'}, "
            f"{status.published} messages published, outbox {status.outbox.depth}")
    if backend.ingest is not None:
        ingest = backend.ingest.status()
        text += (f"; ingest: {ingest['written_messages']} messages / "
                 f"{ingest['written_points']} rows written, "
                 f"{ingest['dead_lettered']} dead-lettered")
    return text


# --- the run -----------------------------------------------------------------------------


def _stop_event() -> asyncio.Event:
    """Set on SIGINT or SIGTERM (from now on, also while everything is stopping)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_demo(loaded: LoadedConfig, print_every: float, duration: float | None,
                   panel_port: int, uplink: bool = True) -> None:
    """Run until Ctrl-C, SIGTERM or `duration`; then stop everything in order: the gateway
    (outputs, retained `offline` state, outbox committed), the simulator, the ingest, the
    database, the broker, and remove the temporary directory."""
    stop = _stop_event()
    started = time.monotonic()
    log_path = Path(tempfile.gettempdir()) / "roomwarden-demo.log"
    print(f"the gateway's log goes to {log_path} (tail -f it in another terminal)", flush=True)
    restore_logging = demo_screen.log_to_file(log_path)
    with contextlib.ExitStack() as logging_back:
        logging_back.callback(restore_logging)
        await _run(loaded, print_every, duration, panel_port, uplink, stop, started, log_path)
    print("demo stopped.", flush=True)


async def _run(loaded: LoadedConfig, print_every: float, duration: float | None,
               panel_port: int, uplink: bool, stop: asyncio.Event, started: float,
               log_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="roomwarden-demo-") as tmp, \
            contextlib.ExitStack() as services:
        workdir = Path(tmp)
        root = loaded.config.uplink.root if loaded.config.uplink is not None else DEFAULT_ROOT
        backend = (start_backend(workdir, services, root) if uplink
                   else Backend(notes=["no uplink (--no-uplink)"]))
        async with SimulatedSite(loaded) as site:
            control_port = await site.serve_control()
            sim_config = workdir / "demo-gateway.yaml"
            write_atomically(site, sim_config)
            print(describe(site, control_port, sim_config), flush=True)
            config = with_demo_user(load_gateway_config(sim_config))
            if backend.broker is not None:
                config = with_local_uplink(config, backend.broker.port)
            gateway = Gateway(config, state_dir=workdir / "state", panel_port=panel_port)
            script = demo_script(loaded)

            async def scene() -> None:
                await gateway.panel_ready.wait()
                assert gateway.panel_port is not None
                print(guide(loaded, panel_port=gateway.panel_port, control_port=control_port,
                            backend=backend, script=script,
                            silent=silent_device(loaded)), flush=True)
                for at, text, act in script:
                    await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
                    act(site)
                    print(f"\n*** {time.monotonic() - started:.0f} s: {text}\n", flush=True)

            # issue 14: a calm terminal (gateway/demo_screen.py): the log in a file, one line
            # per alarm event and output switch, the status only when it changed
            pinned = (f"panel http://127.0.0.1:{{port}}/ (demo/demo) · simctl port "
                      f"{control_port} · log {log_path} · Ctrl-C stops")

            async def screen() -> None:
                await gateway.panel_ready.wait()
                await demo_screen.watch(
                    gateway, started, every=print_every,
                    pinned=pinned.format(port=gateway.panel_port),
                    outputs=lambda: outputs_line(gateway),
                    backend=lambda: backend_line(gateway, backend))

            tasks = [asyncio.create_task(gateway.run()), asyncio.create_task(scene()),
                     asyncio.create_task(screen())]
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration)
            finally:
                print("\nstopping: gateway ...", flush=True)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        if backend.broker is not None:
            print("stopping: " + ", ".join(name for name, part in (
                ("ingest", backend.ingest), ("database", backend.database),
                ("broker", backend.broker)) if part is not None) + " ...", flush=True)


def silent_device(loaded: LoadedConfig) -> str | None:
    """The device the scene silences: the first Modbus device that drives no output."""
    return next((d.id for d in loaded.config.devices
                 if isinstance(loaded.profiles.get(d.profile), ModbusProfile)
                 and d.id not in {o.device for o in loaded.config.outputs}), None)
