"""The panel's HTTP server, compared: aiohttp (what the panel uses) against an asyncio server
on h11 (a pure-Python HTTP/1.1 state machine) and the standard library's threaded
`http.server` — each serving the same two answers (a 10 KB JSON state, a 12 KB page) from its
own process on loopback.

Per server: RSS after start (and the import's share of it), RSS and peak after the requests,
threads, CPU seconds per 1,000 requests, and the latency seen by a client in this process:
1,000 GETs on one keep-alive connection, 200 GETs each on a new connection (p50 / p99).

h11 is not a dependency of RoomWarden; the h11 row runs only when it can be imported (e.g.
`PYTHONPATH=<a venv with h11>/lib/python3.11/site-packages`). This is a measurement for the
recommendation in docs/performance.md, not part of `make bench`.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from gateway.localservices import free_port
from tests.bench.bench_process import proc_sample
from tests.bench.common import REPO, emit_json
from tests.bench.services import stop_process, wait_until

STATE = json.dumps({"gateway": "gw", "alarms": [{"rule": f"r{i}", "subject": f"s{i}.p",
                                                 "state": "active_unacknowledged"}
                                                for i in range(60)],
                    "rooms": [{"id": f"room{i}", "devices": [{"id": f"d{i}{j}", "v": 21.5}
                                                             for j in range(20)]}
                              for i in range(5)]}).encode()
PAGE = b"<!doctype html><title>panel</title>" + b"<p>" + b"x" * 12_000 + b"</p>"

SERVERS: dict[str, str] = {
    "aiohttp": """
from aiohttp import web
async def state(request): return web.Response(body=STATE, content_type="application/json")
async def page(request): return web.Response(body=PAGE, content_type="text/html")
app = web.Application(client_max_size=64 * 1024)
app.router.add_get("/api/state", state)
app.router.add_get("/", page)
web.run_app(app, host="127.0.0.1", port=PORT, print=None, access_log=None)
""",
    "h11": """
import asyncio, h11
ANSWERS = {"/api/state": (STATE, b"application/json"), "/": (PAGE, b"text/html")}
async def serve(reader, writer):
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), 30)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                body, kind = ANSWERS.get(event.target.decode(), (b"not found", b"text/plain"))
                status = 200 if event.target.decode() in ANSWERS else 404
                writer.write(conn.send(h11.Response(status_code=status, headers=[
                    ("content-type", kind), ("content-length", str(len(body)))])))
                writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                await writer.drain()
            elif isinstance(event, h11.EndOfMessage):
                if conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                break
    except (h11.RemoteProtocolError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", PORT, limit=65536)
    async with server:
        await server.serve_forever()
asyncio.run(main())
""",
    "http.server (threads)": """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ANSWERS = {"/api/state": (STATE, "application/json"), "/": (PAGE, "text/html")}
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body, kind = ANSWERS.get(self.path, (b"not found", "text/plain"))
        self.send_response(200 if self.path in ANSWERS else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
""",
}

IMPORTS = {"aiohttp": "import aiohttp.web", "h11": "import asyncio, h11",
           "http.server (threads)": "import http.server"}


def _rss_of_import(statement: str) -> float:
    code = (f"{statement}\nprint([l for l in open('/proc/self/status') "
            "if l.startswith('VmRSS')][0].split()[1])")
    bare = ("print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0]"
            ".split()[1])")
    with_it = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env=os.environ)
    without = subprocess.run([sys.executable, "-c", bare], capture_output=True, text=True,
                             check=True)
    return (int(with_it.stdout) - int(without.stdout)) / 1024


def _latencies(port: int, n: int, *, keep_alive: bool) -> list[float]:
    times = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(n):
        if not keep_alive:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        began = time.perf_counter()
        conn.request("GET", "/api/state")
        response = conn.getresponse()
        body = response.read()
        times.append(time.perf_counter() - began)
        assert response.status == 200 and body == STATE
        if not keep_alive:
            conn.close()
    conn.close()
    return times


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e6


def measure(kind: str) -> dict[str, Any]:
    port = free_port()
    source = f"STATE = {STATE!r}\nPAGE = {PAGE!r}\nPORT = {port}\n" + SERVERS[kind]
    process = subprocess.Popen([sys.executable, "-c", source], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answers() -> bool:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/")
                ok = conn.getresponse().status == 200
                conn.close()
                return ok
            except OSError:
                return False

        wait_until(answers, 30, f"{kind} server", process)
        started = proc_sample(process.pid)
        keep = _latencies(port, 1000, keep_alive=True)
        fresh = _latencies(port, 200, keep_alive=False)
        after = proc_sample(process.pid)
    finally:
        stop_process(process)
    return {
        "import_mib": _rss_of_import(IMPORTS[kind]),
        "rss_started_mib": started.rss_kib / 1024, "rss_after_mib": after.rss_kib / 1024,
        "rss_peak_mib": after.hwm_kib / 1024, "threads_after": after.threads,
        "cpu_s_per_1000": 1000 * (after.cpu_seconds - started.cpu_seconds) / 1201,
        "keepalive_p50_us": _pct(keep, 0.5), "keepalive_p99_us": _pct(keep, 0.99),
        "new_connection_p50_us": _pct(fresh, 0.5), "new_connection_p99_us": _pct(fresh, 0.99),
        "keepalive_mean_us": statistics.fmean(keep) * 1e6,
    }


def main() -> dict[str, Any]:
    results = {}
    for kind in SERVERS:
        if kind == "h11" and importlib.util.find_spec("h11") is None:
            print("h11 is not importable: its row is skipped")
            continue
        results[kind] = measure(kind)
    print("\n== Panel HTTP server candidates (one process each, loopback, 10 KB JSON)")
    print(f"  {'server':<22} {'import MiB':>10} {'RSS MiB':>8} {'peak':>6} {'threads':>7} "
          f"{'CPU s/1k':>8} {'keep-alive p50/p99 µs':>22} {'new conn p50/p99 µs':>20}")
    for kind, r in results.items():
        print(f"  {kind:<22} {r['import_mib']:>10.1f} {r['rss_after_mib']:>8.1f} "
              f"{r['rss_peak_mib']:>6.1f} {r['threads_after']:>7} {r['cpu_s_per_1000']:>8.3f} "
              f"{r['keepalive_p50_us']:>10.0f} / {r['keepalive_p99_us']:<9.0f} "
              f"{r['new_connection_p50_us']:>8.0f} / {r['new_connection_p99_us']:<9.0f}")
    emit_json("panel_servers", results)
    return results


if __name__ == "__main__":
    main()
