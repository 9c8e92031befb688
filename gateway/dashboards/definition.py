"""The shipped dashboards: site overview, room detail, fleet health and alarm history.

Names come from gateway.ingest.schema (docs/influx-schema.md): one measurement per quantity
with the field `value` (VictoriaMetrics: `<quantity>_value`), `alarm_events`, `gateway_state`
and, where the store drops strings, `alarm_history` (gateway.ingest.eventlabels).
"""

from __future__ import annotations

from gateway.contract.enums import Severity
from gateway.dashboards.model import PROM, Dashboard, Expect, Panel, Query, Row, Variable
from gateway.ingest.eventlabels import HISTORY_MEASUREMENT
from gateway.ingest.schema import ALARM_MEASUREMENT as ALARMS
from gateway.ingest.schema import STATE_MEASUREMENT as STATE

SITES = '"site" =~ /^$site$/'
RECENT = "time > now() - 30d"
"""The window "latest" panels look back (a gateway reports its state at least daily)."""
FRESH = "5m"
"""A gateway counts as online only while its latest state says so and is at most this old: it
publishes its state every `uplink.state_interval` (60 s by default: keep it under this). A
gateway killed, cut off or powered down stops publishing; its last will says `offline` only
once the broker notices (1.5 keep-alives), and is lost if the broker restarts meanwhile."""
NOT_DRILL = "drill!=\"true\""
"""A live drill's alarms are no hazard: they never count among the active alarms."""

RP = Variable("rp", "Retention policy", influxql="SHOW RETENTION POLICIES", default="autogen")
SITE_MULTI = Variable("site", "Site", influxql=f'SHOW TAG VALUES FROM "$rp"."{STATE}" '
                      'WITH KEY = "site"', metricsql=f"label_values({STATE}_online, site)",
                      multi=True, include_all=True)
SITE_ONE = Variable("site", "Site", influxql=SITE_MULTI.influxql, metricsql=SITE_MULTI.metricsql)

UNITS = {"°C": "celsius", "%RH": "humidity", "%": "percent", "%LEL": "suffix:%LEL",
         "A": "amp", "W": "watt", "s": "s"}
"""The `unit` tag (profiles) → Grafana's unit."""


def _tags(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def quantity(title: str, name: str, unit: str | None, by: tuple[str, ...],
             kind: str = "timeseries", agg: str = "mean") -> Panel:
    """A telemetry quantity across the chosen sites, good readings, `agg` per interval."""
    group = ("site", *by, *(("unit",) if unit else ()))
    where = f"{SITES} AND \"quality\" = 'good'" if kind == "timeseries" else SITES
    matcher = 'site=~"$site",quality="good"' if kind == "timeseries" else 'site=~"$site"'
    prom_agg = {"mean": "avg", "max": "max"}[agg]
    return Panel(title, kind, (Query(
        influxql=(f'SELECT {agg}("value") FROM "$rp"."{name}" WHERE {where} AND $timeFilter '
                  f"GROUP BY time($__interval), {_tags(group)} fill(none)"),
        metricsql=(f"{prom_agg} by ({', '.join(group)}) "
                   f"({prom_agg}_over_time({name}_value{{{matcher}}}[$__interval]))"),
        expect=Expect(tags=group, unit=unit)),), unit=UNITS.get(unit or ""))


def _last_alarms(by: str, fields: str) -> str:
    return (f'SELECT {fields} FROM "$rp"."{ALARMS}" WHERE {SITES} AND "kind" = \'alarm\' '
            f"AND \"drill\" != 'true' AND {RECENT} GROUP BY {by}")


ALARM_KEY = '"site", "gateway", "room", "rule", "subject", "severity"'
LAST_ACTIVE = 'last("active") AS "active"'
LAST_ACTIVE_STATE = f'{LAST_ACTIVE}, last("state") AS "state", last("title") AS "title"'
ACTIVE = (f'last_over_time(alarm_events_active{{site=~"$site",kind="alarm",{NOT_DRILL}}}[30d])'
          " == 1")
ACTIVE_STATE = (f'(last_over_time(alarm_events_state_code{{site=~"$site",kind="alarm",'
                f'{NOT_DRILL}}}[30d]) and {ACTIVE}) or ({ACTIVE}) * -1')
"""The alarms in the list with their state (`state_code`, gateway.ingest.schema); -1 for one
whose last event was written before the ingest wrote state codes."""
STATE_NAMES = ((1, "active unacknowledged"), (2, "active acknowledged"),
               (3, "returned unacknowledged"), (-1, "active (state not recorded)"))

def _last_state(fields: str) -> str:
    return (f'SELECT {fields} FROM "$rp"."{STATE}" WHERE {SITES} AND {RECENT} '
            'GROUP BY "site", "gateway"')


def _fresh_state(fields: str) -> str:
    return (f'SELECT {fields} FROM "$rp"."{STATE}" WHERE {SITES} AND time > now() - {FRESH} '
            'GROUP BY "site", "gateway"')


SILENT = Panel("Gateways silent", "table", (Query(
    influxql=(f'SELECT * FROM ({_last_state("last(online) AS online")}) '
              f"WHERE time < now() - {FRESH}"),
    metricsql=(f'tlast_over_time({STATE}_online{{site=~"$site"}}[30d]) * 1000 unless on(site, '
               f'gateway) last_over_time({STATE}_online{{site=~"$site"}}[{FRESH}])'),
    table=True, expect=Expect(min_series=0)),),  # (tests/dashboards/test_freshness.py)
    unit="dateTimeFromNow", width=6,
    description=f"Gateways not heard for {FRESH} (killed, cut off, powered down), with when "
                "they last were.")
STOPPED = Panel("Gateways stopped", "table", (Query(
    influxql=f'SELECT * FROM ({_fresh_state("last(online) AS online")}) WHERE "online" = false',
    metricsql=(f'tlast_over_time({STATE}_online{{site=~"$site"}}[{FRESH}]) * 1000 and on(site, '
               f'gateway) (last_over_time({STATE}_online{{site=~"$site"}}[{FRESH}]) == 0)'),
    table=True, expect=Expect(min_series=0)),),  # (tests/dashboards/test_freshness.py)
    unit="dateTimeFromNow", width=6,
    description=f"Gateways whose latest state, in the last {FRESH}, says offline: a clean stop, "
                "or a last will (the broker lost the gateway; placed just after the last "
                "message heard from it). After that they are silent.")


SITE_OVERVIEW = Dashboard(
    "roomwarden-site-overview", "RoomWarden / Site overview",
    "Active alarms, room climate, UPS and battery, distribution panels of the chosen sites.",
    (RP, SITE_MULTI),
    (Row("Alarms"),
     Panel("Active alarms by severity", "stat", (Query(
         influxql=(f'SELECT count("active") FROM ({_last_alarms(ALARM_KEY, LAST_ACTIVE)})'
                   ' WHERE "active" = true GROUP BY "severity"'),
         metricsql=f"count by (severity) ({ACTIVE})", table=True,
         expect=Expect(tags=("severity",))),), width=6),
     Panel("Active alarms", "table", (Query(
         influxql=(f'SELECT * FROM ({_last_alarms(ALARM_KEY, LAST_ACTIVE_STATE)})'
                   ' WHERE "active" = true'),
         metricsql=ACTIVE_STATE, table=True,
         expect=Expect(columns=("site", "gateway", "rule", "subject", "severity"))),),
         width=18, value_names=STATE_NAMES, value_title="state"),
     Panel("Alarm transitions by severity", "timeseries", (Query(
         influxql=(f'SELECT count("seq") FROM "$rp"."{ALARMS}" WHERE {SITES} AND "kind" = '
                   "'alarm' AND \"drill\" != 'true' AND $timeFilter GROUP BY time($__interval), "
                   '"severity" fill(none)'),
         metricsql=('sum by (severity) (count_over_time(alarm_events_seq{site=~"$site",'
                    f'kind="alarm",{NOT_DRILL}}}[$__interval]))'),
         expect=Expect(tags=("severity",))),), width=12),
     SILENT, STOPPED,
     Row("Room climate"),
     quantity("Temperature by room", "temperature", "°C", ("room", "point")),
     quantity("Relative humidity by room", "relative_humidity", "%RH", ("room", "point")),
     quantity("Hydrogen", "h2_lel", "%LEL", ("room", "point")),
     Row("UPS and battery"),
     quantity("UPS on battery", "ups_on_battery", None, ("room", "device"),
              kind="state-timeline", agg="max"),
     quantity("Battery state of charge", "battery_soc", "%", ("room", "device")),
     quantity("UPS load", "ups_load_pct", "%", ("room", "device")),
     quantity("UPS runtime remaining", "ups_runtime", "s", ("room", "device")),
     Row("Distribution panels"),
     quantity("Phase currents", "phase_current", "A", ("room", "device", "point")),
     quantity("Total active power", "active_power", "W", ("room", "device")),
     quantity("Phase active power", "phase_active_power", "W", ("room", "device", "point"))))

NOT_TELEMETRY = f"^(?!(?:{ALARMS}|{STATE}|{HISTORY_MEASUREMENT})$)(.+)$"
ROOM_SERIES = f'{{__name__=~".+_value",__name__!="{ALARMS}_value",site="$site",room="$room"}}'

ROOM_ALL = '{__name__=~"($quantity)_(value|no_value)",site="$site",room="$room"}'
ROOM_NOT_GOOD = ROOM_ALL[:-1] + ',quality!="good"}'
NEWEST = (f"(tlast_over_time({ROOM_ALL}[$__range]) == on(device, point) group_left "
          f"max by (device, point) (tlast_over_time({ROOM_ALL}[$__range])))")
"""Each point's series (one per quality) that has its newest sample: a point whose sensor
stopped answering shows `comm_error`, not its last good value; a point that recovered is not
listed as not good for the rest of the range (the central audit)."""

ROOM_DETAIL = Dashboard(
    "roomwarden-room-detail", "RoomWarden / Room detail",
    "Every point of one room: latest readings, points not good, one graph per quantity, "
    "and the room's alarm events with who acknowledged them.",
    (RP, SITE_ONE,
     Variable("room", "Room",
              influxql='SHOW TAG VALUES WITH KEY = "room" WHERE "site" =~ /^$site$/',
              metricsql='label_values({__name__=~".+_value",site="$site"}, room)'),
     Variable("quantity", "Quantity",
              influxql="SHOW MEASUREMENTS WHERE \"site\" =~ /^$site$/ AND \"room\" =~ /^$room$/",
              metricsql=f"label_values({ROOM_SERIES}, __name__)", multi=True, include_all=True,
              regex=f"/{NOT_TELEMETRY}/", metricsql_regex="/^(?!.*_no_value$)(.+)_value$/",
              hide=True)),
    (Row("Latest readings"),
     Panel("Latest reading of every point", "table", (Query(
         influxql=('SELECT last("value") AS "value", last("no_value") AS "no_value" FROM '
                   '"$rp"./^$quantity$/ WHERE "site" =~ /^$site$/ AND "room" =~ /^$room$/ AND '
                   '$timeFilter GROUP BY "device", "point", "quality", "unit"'),
         metricsql=f"last_over_time({ROOM_ALL}[$__range]) and on(device, point, quality) "
                   f"{NEWEST}", table=True,
         expect=Expect(columns=("device", "point", "quality"))),),
         description="VictoriaMetrics: each point's newest sample, whatever its quality. "
                     "InfluxQL: the newest sample of each point and quality, with its time."),
     Panel("Points not good", "table", (Query(
         influxql=('SELECT last("no_value") AS "no_value" FROM "$rp"./^$quantity$/ WHERE '
                   "\"site\" =~ /^$site$/ AND \"room\" =~ /^$room$/ AND \"quality\" != 'good' AND "
                   f'time > now() - {FRESH} GROUP BY "device", "point", "quality"'),
         metricsql=(f"last_over_time({ROOM_NOT_GOOD}[$__range]) and on(device, point, quality) "
                    f"{NEWEST}"), table=True,
         expect=Expect(columns=("device", "point", "quality"))),),
         description=f"Points whose newest sample is not good (InfluxQL: a sample not good "
                     f"in the last {FRESH})."),
     Row("Quantities"),
     Panel("$quantity", "timeseries", (Query(
         influxql=('SELECT mean("value") FROM "$rp"."$quantity" WHERE "site" =~ /^$site$/ AND '
                   "\"room\" =~ /^$room$/ AND $timeFilter GROUP BY time($__interval), \"point\", "
                   '"unit" fill(none)'),
         metricsql=('avg by (point, unit) (avg_over_time({__name__="${quantity}_value",'
                    'site="$site",room="$room"}[$__interval]))'),
         expect=Expect(tags=("point",))),), repeat="quantity"),
     Row("Alarm events"),
     Panel("Alarm events of the room", "table", (Query(
         influxql=('SELECT "state", "previous_state", "actor", "note", "title", "rule", '
                   f'"subject", "severity" FROM "$rp"."{ALARMS}" WHERE "site" =~ /^$site$/ AND '
                   "\"room\" =~ /^$room$/ AND $timeFilter ORDER BY time DESC LIMIT 500"),
         metricsql=(f'tlast_over_time({HISTORY_MEASUREMENT}_seq{{site="$site",room="$room"}}'
                    "[$__range]) * 1000"), table=True,
         expect=Expect(columns=("state", "actor", "rule", "subject"))),), width=24,
         unit=None)))

SEVERITY = Variable("severity", "Severity", values=tuple(s.value for s in Severity), multi=True,
                    include_all=True, all_value=".*")
HISTORY_COLUMNS = ("state", "previous_state", "severity", "actor", "note", "title", "rule",
                   "subject", "drill")
"""`drill` is `true` on a live drill's events (issue 12), empty on real ones."""
_HISTORY_SELECT = ('SELECT "state", "previous_state", "actor", "note", "title", "seq" '
                   f'FROM "$rp"."{ALARMS}" WHERE {SITES} AND "severity" =~ /^$severity$/')
_HISTORY_GROUP = (' GROUP BY "site", "gateway", "room", "rule", "subject", "severity", "kind", '
                  '"drill"')

ALARM_HISTORY = Dashboard(
    "roomwarden-alarm-history", "RoomWarden / Alarm history",
    "Every alarm transition with its state, severity, the user who acknowledged, shelved or "
    "cleared it and their note; the drill column says true for a live drill's alarms and its "
    "start and end. (On VictoriaMetrics the strings are labels of alarm_history.)",
    (RP, SITE_MULTI, SEVERITY),
    (Panel("Alarm events", "table", (Query(
        influxql=f"{_HISTORY_SELECT} AND $timeFilter{_HISTORY_GROUP} ORDER BY time DESC LIMIT 1000",
        metricsql=(f'tlast_over_time({HISTORY_MEASUREMENT}_seq{{site=~"$site",'
                   'severity=~"$severity"}[$__range]) * 1000'), table=True,
        expect=Expect(columns=HISTORY_COLUMNS, min_series=1)),), unit=None, width=24,
        height=12, description="Time (VictoriaMetrics: the value, ms) of each transition."),
     Panel("Operator actions (acknowledge, shelve, notes)", "table", (Query(
         influxql=(f"{_HISTORY_SELECT} AND \"actor\" != 'system' AND $timeFilter"
                   f"{_HISTORY_GROUP} ORDER BY time DESC LIMIT 1000"),
         metricsql=(f'tlast_over_time({HISTORY_MEASUREMENT}_seq{{site=~"$site",'
                    'severity=~"$severity",actor!="system"}[$__range]) * 1000'), table=True,
         expect=Expect(columns=("actor", "note", "state", "rule"))),), width=24),
     Panel("Transitions by severity", "timeseries", (Query(
         # events without a severity (suppressions, a drill's start and end) are no alarm's
         influxql=(f'SELECT count("seq") FROM "$rp"."{ALARMS}" WHERE {SITES} AND "severity" =~'
                   " /^$severity$/ AND \"severity\" != '' AND $timeFilter GROUP BY "
                   'time($__interval), "severity" fill(none)'),
         metricsql=('sum by (severity) (count_over_time(alarm_events_seq{site=~"$site",'
                    'severity=~"$severity",severity!=""}[$__interval]))'),
         expect=Expect(tags=("severity",))),), width=24)))


def _state(field: str, agg: str, unit: str | None = None, title: str = "") -> Panel:
    return Panel(title, "timeseries", (Query(
        influxql=(f'SELECT {agg}("{field}") FROM "$rp"."{STATE}" WHERE {SITES} AND $timeFilter'
                  ' GROUP BY time($__interval), "site", "gateway" fill(none)'),
        metricsql=(f"{agg}_over_time({STATE}_{field}{{site=~\"$site\"}}[$__interval])"),
        expect=Expect(tags=("site", "gateway"))),), unit=unit)


def _prom(title: str, expr: str, tags: tuple[str, ...], unit: str | None = None) -> Panel:
    return Panel(title, "timeseries", (Query("", expr, source=PROM,
                                             expect=Expect(tags=tags)),), unit=unit, width=8)


FLEET_HEALTH = Dashboard(
    "roomwarden-fleet-health", "RoomWarden / Fleet health",
    "Gateways online, their outboxes and devices (from gateway_state), and the ingest and "
    "gateways as Prometheus scrapes them (central/prometheus/prometheus.yml).",
    (RP, SITE_MULTI),
    (Row("Gateways"),
     Panel("Gateways online", "stat", (Query(
         influxql=(f'SELECT count("online") FROM ({_fresh_state("last(online) AS online")}) '
                   'WHERE "online" = true'),
         metricsql=f'count(last_over_time({STATE}_online{{site=~"$site"}}[{FRESH}]) == 1)',
         table=True),), width=6, description=f"Gateways whose latest state, at most {FRESH} "
                                             "old, says online."),
     SILENT, STOPPED,
     Panel("Offline messages in range", "table", (Query(
         influxql=(f'SELECT count("online") AS "offline" FROM "$rp"."{STATE}" WHERE {SITES} '
                   'AND "online" = false AND $timeFilter GROUP BY "site", "gateway"'),
         metricsql=(f'count_over_time({STATE}_online{{site=~"$site"}}[$__range]) - '
                    f'sum_over_time({STATE}_online{{site=~"$site"}}[$__range]) > 0'),
         table=True, expect=Expect(tags=("site", "gateway"))),), width=6,
         description="Offline states (clean stops and last wills) per gateway."),
     Panel("Outbox depth (sum)", "stat", (Query(
         influxql=(f'SELECT sum("depth") FROM ({_last_state("last(outbox_depth) AS depth")})'),
         metricsql=f'sum(last_over_time({STATE}_outbox_depth{{site=~"$site"}}[30d]))',
         table=True),), width=6),
     Panel("Last seen", "table", (Query(
         influxql=_last_state('last("online") AS "online"'),
         metricsql=f'tlast_over_time({STATE}_online{{site=~"$site"}}[30d]) * 1000',
         table=True, expect=Expect(columns=("site", "gateway"))),), unit="dateTimeFromNow",
         width=6, description="Time of each gateway's last state message."),
     Panel("Gateways", "table", (Query(
         influxql=_last_state('last("online") AS "online", last("devices_online") AS '
                              '"devices_online", last("devices_total") AS "devices_total", '
                              'last("outbox_depth") AS "outbox_depth", last("software") AS '
                              '"software"'),
         metricsql=(f'last_over_time({{__name__=~"{STATE}_(online|devices_online|devices_total'
                    '|outbox_depth)",site=~"$site"}[30d])'), table=True,
         expect=Expect(columns=("site", "gateway"), min_series=2)),), width=24),
     _state("online", "max", title="Online"),
     _state("outbox_depth", "max", title="Outbox depth"),
     _state("outbox_oldest_age_s", "max", "s", "Oldest outbox message age"),
     _state("devices_online", "min", title="Devices online"),
     Row("Ingest and gateways (Prometheus)"),
     _prom("Ingest queue depth", "sum by (instance) (roomwarden_ingest_queue_depth)",
           ("instance",)),
     _prom("Ingest points written per second",
           "sum by (instance) (rate(roomwarden_ingest_points_written_total[$__rate_interval]))",
           ("instance",)),
     _prom("Ingest connected to the broker", "roomwarden_ingest_connected", ("instance",)),
     _prom("Gateway uplink connected", "roomwarden_uplink_connected", ("instance",)),
     _prom("Gateway devices online", "roomwarden_devices_online", ("instance",)),
     _prom("Gateway active alarms", "sum by (instance) (roomwarden_alarms_active)",
           ("instance",))))

DASHBOARDS = (SITE_OVERVIEW, ROOM_DETAIL, FLEET_HEALTH, ALARM_HISTORY)
