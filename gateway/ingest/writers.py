"""The database write, behind one small interface: InfluxDB's v1 `/write` or v2 `/api/v2/write`.

`influx.api` in the central config chooses (gateway.ingest.settings):

* **v2** — org, bucket, token: InfluxDB 2.x and 3.x, InfluxDB 1.8+ (its v2 compatibility
  endpoint), VictoriaMetrics. influxdb-client's synchronous write API.
* **v1** — database, retention policy, username/password: InfluxDB 1.x (Debian's `influxdb`
  package), and 2.x/3.x through their v1 compatibility API. A plain urllib3 POST to
  `/write?db=…&rp=…&precision=ns` with HTTP basic authentication.

Both take line protocol and raise what the service's retry logic already understands: an
`ApiException` carrying the HTTP status (4xx: rejected, dead-letter the culprits; 429/5xx:
retry) or a urllib3/OS error for a connection that failed (retry). Neither retries by itself.
An answer of either that blames the setup, not the points — 401/403 (credentials, a token)
or 404 (no such database or bucket) — is `SetupRefused`, an OSError: retried with back-off and
logged, never dead-lettered, so fixing the credentials or creating the database loses nothing
(the v2 writer once dead-lettered and acknowledged them: the gateways then dropped the data).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Protocol

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from gateway.ingest.settings import IngestSettings


class Writer(Protocol):
    """Writes line protocol (one line per element) or raises; never retries."""

    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str:
        """Where it writes, for the log (no secrets)."""
        ...


class V2Writer:
    """`/api/v2/write?org=…&bucket=…` with `Authorization: Token …` (influxdb-client)."""

    def __init__(self, url: str, *, org: str, bucket: str, token: str, timeout: float) -> None:
        self._org, self._bucket, self._url = org, bucket, url
        self._client = InfluxDBClient(url=url, token=token, org=org,
                                      timeout=int(timeout * 1000), retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        try:
            self._api.write(bucket=self._bucket, org=self._org, record="\n".join(lines))
        except ApiException as exc:
            if exc.status in SETUP_STATUSES:  # a token refused, a bucket not there (yet)
                body = str(exc.body or exc.reason or "")[:300].replace("\n", " ")
                raise SetupRefused(f"{self.describe()}: HTTP {exc.status} {body}") from exc
            raise

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def describe(self) -> str:
        return f"v2 {self._url} org={self._org} bucket={self._bucket}"


class SetupRefused(OSError):
    """The database refused the write for a reason the points are not to blame for."""


SETUP_STATUSES = (401, 403, 404)
"""Answers that blame the setup (credentials, token, database or bucket), not the points."""


class V1Writer:
    """`/write?db=…[&rp=…]&precision=ns`, HTTP basic authentication if a username is set."""

    def __init__(self, url: str, *, database: str, retention_policy: str | None = None,
                 username: str | None = None, password: str | None = None,
                 timeout: float = 10.0) -> None:
        params = {"db": database, "precision": "ns"}
        if retention_policy is not None:
            params["rp"] = retention_policy
        self._url = url.rstrip("/") + "/write?" + urllib.parse.urlencode(params)
        self._where = f"v1 {url} db={database} rp={retention_policy or '(default)'}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username is not None:
            self._headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        self._pool = urllib3.PoolManager(maxsize=1, retries=False,
                                         timeout=urllib3.Timeout(total=timeout))

    def write(self, lines: Sequence[str]) -> None:
        response = self._pool.request("POST", self._url, body="\n".join(lines).encode(),
                                      headers=self._headers, preload_content=True)
        if 200 <= response.status < 300:
            return
        if response.status in SETUP_STATUSES:
            body = response.data.decode(errors="replace")[:300].replace("\n", " ")
            raise SetupRefused(f"{self._where}: HTTP {response.status} {body}")
        raise ApiException(http_resp=response)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._pool.clear()

    def describe(self) -> str:
        return self._where


def make_writer(settings: IngestSettings) -> Writer:
    """The writer the central config asks for (secrets read now: ConfigErrors if unreadable)."""
    influx = settings.influx
    if influx.api == "v1":
        assert influx.database is not None  # the settings' validator insists
        return V1Writer(influx.url, database=influx.database,
                        retention_policy=influx.retention_policy, username=influx.username,
                        password=settings.influx_password(), timeout=influx.timeout)
    assert influx.org is not None and influx.bucket is not None
    return V2Writer(influx.url, org=influx.org, bucket=influx.bucket,
                    token=settings.influx_token(), timeout=influx.timeout)
