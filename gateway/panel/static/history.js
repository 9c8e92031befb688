// RoomWarden panel: the Events view (the alarm journal, filtered by room, severity, time range
// and who did it) and the Incidents view (stored incident records and their reports). Reads
// only; times in the site's time zone, like the rest of the console. No polling: a view reads
// when it is opened or its form is sent.
"use strict";

window.RoomWardenHistory = (() => {
  const { el, fmtValue, human } = window.RoomWardenViews;
  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const VIEWS = ["alarms", "events", "incidents"];
  const SEVERITY_AT_LEAST = {
    critical: "critical", major: "critical,major", minor: "critical,major,minor",
    warning: "critical,major,minor,warning",
  };
  const FETCH_MS = 15000;
  let tz = "UTC";
  let rooms = [];
  let roomsKey = "";
  let eventsNext = null;
  let eventsQuery = null;
  let incidentsNext = null;
  let eventsTicket = 0;     // a newer read makes an older answer moot (answers can cross)
  let incidentsTicket = 0;
  const actors = new Set();
  const ui = {};

  // --- time in the site's zone ---------------------------------------------------------------

  function zone() {
    try { new Intl.DateTimeFormat("en", { timeZone: tz }); return tz; } catch (e) { return "UTC"; }
  }

  // "2026-12-03 14:05:09" in the site's zone
  function fmtStamp(ns, withSeconds = true) {
    if (ns === null || ns === undefined) return "—";
    const parts = {};
    const opts = { timeZone: zone(), year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    for (const p of new Intl.DateTimeFormat("en-GB", opts).formatToParts(new Date(ns / 1e6))) {
      parts[p.type] = p.value;
    }
    const time = `${parts.hour}:${parts.minute}${withSeconds ? `:${parts.second}` : ""}`;
    return `${parts.year}-${parts.month}-${parts.day} ${time}`;
  }

  // the value of a datetime-local input for a time (site zone)
  const localInput = (ns) => fmtStamp(ns, false).replace(" ", "T");

  // --- fetching ------------------------------------------------------------------------------

  async function getJson(path) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_MS);
    try {
      const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" },
        signal: abort.signal });
      let data = null;
      try { data = await r.json(); } catch (e) { data = null; }
      return { status: r.status, ok: r.ok, data };
    } finally {
      clearTimeout(timer);
    }
  }

  function problem(target, r) {
    if (r.status === 401) {
      target.textContent = "This panel needs a login to read the journal: log in, then press Show again.";
      const login = $("login-open");
      if (login) login.click();
    } else {
      target.textContent = (r.data && r.data.message) || `The gateway answered ${r.status}.`;
    }
    target.hidden = false;
  }

  // --- events --------------------------------------------------------------------------------

  function eventsParams() {
    const p = new URLSearchParams();
    const period = ui.period.value;
    if (period === "custom") {
      if (ui.since.value) p.set("since", ui.since.value);
      if (ui.until.value) p.set("until", ui.until.value);
    } else {
      p.set("last", period);
    }
    if (ui.room.value) p.set("room", ui.room.value);
    if (ui.severity.value) p.set("severity", SEVERITY_AT_LEAST[ui.severity.value]);
    const who = ui.actor.value.trim();
    if (who) p.set("actor", who);
    return p;
  }

  function stateWords(e) {
    // an output held on until an operator reset, and its release (rule `$output`)
    if (e.rule === "$output") return (e.note || "").startsWith("held") ? "output held until reset" : "output hold released";
    if (e.kind !== "alarm") return human(e.kind);
    if (e.previous_state === e.state) return human(e.state);
    return `${human(e.previous_state)} → ${human(e.state)}`;
  }

  function roomName(id) {
    if (!id) return "site";
    const room = rooms.find((r) => r.id === id);
    return room && room.name ? `${room.name} (${id})` : id;
  }

  function eventRow(e) {
    const sev = e.severity || "";
    const what = el("td", { "data-label": "Event" },
      el("span", { class: "ev-title" }, e.title || e.rule),
      el("span", { class: "subject" }, `${e.rule} · ${e.subject}`));
    if (e.drill) what.prepend(el("span", { class: "tag drill", testid: "event-drill" }, "DRILL"), " ");
    if (e.value !== null && e.value !== undefined && e.kind === "alarm") {
      what.append(el("span", { class: "subject" }, `value ${fmtValue(e.value)}`));
    }
    return el("tr", { testid: "event-row", "data-seq": e.seq, "data-actor": e.actor,
      class: `ev sev-${sev || "none"}${e.drill ? " drill" : ""}` },
    el("td", { class: "time", "data-label": "Time", testid: "event-time" }, fmtStamp(e.ts)),
    el("td", { "data-label": "Severity" }, sev ? el("span", { class: "sev" }, sev.toUpperCase()) : "—"),
    el("td", { "data-label": "Room", testid: "event-room" }, roomName(e.room)),
    what,
    el("td", { "data-label": "Change", testid: "event-state" }, stateWords(e)),
    el("td", { "data-label": "By", testid: "event-actor", class: "actor" }, e.actor),
    el("td", { "data-label": "Note", testid: "event-note" }, e.note || ""));
  }

  async function loadEvents(more) {
    ui.eventsError.hidden = true;
    if (!more) {
      eventsQuery = eventsParams();
      eventsNext = null;
    }
    const p = new URLSearchParams(eventsQuery);
    if (more && eventsNext) p.set("before", eventsNext);
    const ticket = ++eventsTicket;
    ui.eventsMore.disabled = true;
    ui.eventsStatus.textContent = "Reading the journal…";
    let r;
    try {
      r = await getJson(`/api/events?${p}`);
    } catch (e) {
      r = { status: 0, ok: false, data: { message: "The gateway does not answer." } };
    }
    if (ticket !== eventsTicket) return;
    ui.eventsMore.disabled = false;
    if (!r.ok) {
      ui.eventsStatus.textContent = "";
      problem(ui.eventsError, r);
      return;
    }
    const d = r.data;
    tz = d.timezone || tz;
    const rows = d.events.map(eventRow);
    for (const e of d.events) actors.add(e.actor);
    ui.actors.replaceChildren(...Array.from(actors).sort().map((a) => el("option", { value: a })));
    if (more) ui.eventsBody.append(...rows); else ui.eventsBody.replaceChildren(...rows);
    eventsNext = d.next;
    const shown = ui.eventsBody.children.length;
    const span = `${fmtStamp(d.since_ns, false)} – ${fmtStamp(d.until_ns, false)} (${zone()})`;
    let text = `${shown} event${shown === 1 ? "" : "s"} from ${span}, newest first.`;
    if (d.next && d.scanned_to_ns) text += ` Searched back to ${fmtStamp(d.scanned_to_ns)} so far.`;
    else if (!d.next) text += shown ? " That is all of them." : " Nothing matches: widen the period or clear a filter.";
    ui.eventsStatus.textContent = text;
    ui.eventsTable.hidden = shown === 0;
    ui.eventsMore.hidden = !d.next;
    ui.eventsMore.textContent = d.scanned_to_ns && !d.events.length ? "Search further back" : "Older events";
  }

  function periodChanged() {
    const custom = ui.period.value === "custom";
    ui.custom.hidden = !custom;
    if (custom && !ui.since.value) {
      const now = Date.now() * 1e6;
      ui.since.value = localInput(now - 86400e9);
      ui.until.value = localInput(now);
    }
  }

  // --- incidents -----------------------------------------------------------------------------

  function incidentRow(i) {
    const open = el("button", { type: "button", class: "btn", testid: "incident-open" }, "Report");
    open.addEventListener("click", () => openReport(i.id));
    const unreadable = i.status === "unreadable";
    open.disabled = unreadable;
    return el("tr", { testid: "incident-row", "data-id": i.id, class: `sev-${i.severity || "none"}` },
      el("td", { class: "time", "data-label": "Triggered" }, unreadable ? "—" : fmtStamp(i.ts)),
      el("td", { "data-label": "Severity" }, i.severity ? el("span", { class: "sev" }, i.severity.toUpperCase()) : "—"),
      el("td", { "data-label": "Room" }, roomName(i.room)),
      el("td", { "data-label": "Trigger" }, unreadable ? `cannot be read: ${i.error}` :
        el("span", {}, el("span", { class: "ev-title" }, i.title || i.rule),
          el("span", { class: "subject" }, `${i.rule} · ${i.subject} · ${i.id}`))),
      el("td", { "data-label": "Status", testid: "incident-status" }, i.kind === "drill" ? `drill, ${i.status}` :
        // an open incident is read up to its last save (docs/incidents.md): say how fresh it is
        i.status === "open" && i.as_of_ns ? `open, as of ${fmtStamp(i.as_of_ns).slice(11)}` : human(i.status)),
      el("td", { class: "num", "data-label": "Events" }, unreadable || i.events == null ? "—" : String(i.events)),
      el("td", {}, open));
  }

  async function loadIncidents(more) {
    ui.incidentsError.hidden = true;
    const p = new URLSearchParams();
    if (more && incidentsNext) p.set("before", incidentsNext);
    const ticket = ++incidentsTicket;
    let r;
    try {
      r = await getJson(`/api/incidents?${p}`);
    } catch (e) {
      r = { status: 0, ok: false, data: { message: "The gateway does not answer." } };
    }
    if (ticket !== incidentsTicket) return;
    if (!r.ok) { problem(ui.incidentsError, r); return; }
    tz = r.data.timezone || tz;
    const rows = r.data.incidents.map(incidentRow);
    if (more) ui.incidentsBody.append(...rows); else ui.incidentsBody.replaceChildren(...rows);
    incidentsNext = r.data.next;
    const shown = ui.incidentsBody.children.length;
    ui.incidentsStatus.textContent = r.data.total ?
      `${shown} of ${r.data.total} incident record${r.data.total === 1 ? "" : "s"}, newest first.` :
      "No incident records on this gateway yet.";
    ui.incidentsTable.hidden = shown === 0;
    ui.incidentsMore.hidden = !incidentsNext;
  }

  function openReport(id) {
    const url = `/api/incidents/report?id=${encodeURIComponent(id)}`;
    ui.reportTitle.textContent = `Incident ${id}`;
    ui.reportFrame.src = url;
    ui.reportLink.href = url;
    ui.report.hidden = false;
    ui.report.scrollIntoView({ block: "start" });
    ui.reportClose.focus();
  }

  function closeReport() {
    ui.report.hidden = true;
    ui.reportFrame.src = "about:blank";
  }

  // --- views ---------------------------------------------------------------------------------

  function show() {
    const wanted = location.hash.replace(/^#/, "");
    const view = VIEWS.includes(wanted) ? wanted : "alarms";
    document.body.dataset.view = view;
    for (const name of VIEWS) {
      const link = $(`nav-${name}`);
      if (link) {
        if (name === view) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
      }
    }
    if (view === "events" && !ui.eventsBody.children.length) loadEvents(false);
    if (view === "incidents") loadIncidents(false);
  }

  // From the console's poll: the site's zone, its rooms (for the room filter), the alarm count.
  function onState(state, active) {
    tz = state.timezone || tz;
    if (ui.navCount) {
      ui.navCount.textContent = String(active);
      ui.navCount.classList.toggle("alarming", active > 0);
    }
    rooms = state.rooms || [];
    const key = rooms.map((r) => `${r.id}\u0000${r.name}`).join("\n");
    if (key !== roomsKey && ui.room) {
      roomsKey = key;
      const chosen = ui.room.value;
      ui.room.replaceChildren(el("option", { value: "" }, "All rooms"),
        ...rooms.map((r) => el("option", { value: r.id }, r.name ? `${r.name} (${r.id})` : r.id)));
      ui.room.value = chosen;
    }
    if (ui.tzNote) ui.tzNote.textContent = `Times are site time (${zone()}).`;
  }

  function init() {
    Object.assign(ui, {
      eventsForm: $("events-form"), period: $("events-period"), custom: $("events-custom"),
      since: $("events-since"), until: $("events-until"), room: $("events-room"),
      severity: $("events-severity"), actor: $("events-actor"), actors: document.getElementById("actors"),
      eventsShow: $("events-show"), eventsReset: $("events-reset"), eventsMore: $("events-more"),
      eventsStatus: $("events-status"), eventsError: $("events-error"),
      eventsTable: $("events-table"), eventsBody: $("events-table").tBodies[0],
      incidentsStatus: $("incidents-status"), incidentsError: $("incidents-error"),
      incidentsTable: $("incidents-table"), incidentsBody: $("incidents-table").tBodies[0],
      incidentsMore: $("incidents-more"), incidentsRefresh: $("incidents-refresh"),
      report: $("report-view"), reportTitle: $("report-title"), reportFrame: $("report-frame"),
      reportLink: $("report-link"), reportClose: $("report-close"), tzNote: $("events-tz"),
      navCount: $("nav-alarm-count"),
    });
    ui.eventsForm.addEventListener("submit", (event) => { event.preventDefault(); loadEvents(false); });
    ui.eventsReset.addEventListener("click", () => {
      ui.eventsForm.reset();
      periodChanged();
      loadEvents(false);
    });
    ui.period.addEventListener("change", periodChanged);
    ui.eventsMore.addEventListener("click", () => loadEvents(true));
    ui.incidentsMore.addEventListener("click", () => loadIncidents(true));
    ui.incidentsRefresh.addEventListener("click", () => loadIncidents(false));
    ui.reportClose.addEventListener("click", closeReport);
    window.addEventListener("hashchange", show);
    periodChanged();
    show();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
  return { onState, fmtStamp };
})();
