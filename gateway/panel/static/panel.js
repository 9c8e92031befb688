// RoomWarden local alarm panel. No framework, no network beyond this gateway.
"use strict";

(() => {
  const POLL_MS = 1500;
  const SEVERITY = { critical: 0, major: 1, minor: 2, warning: 3 };
  const ACTIVE = new Set(["active_unacknowledged", "active_acknowledged", "returned_unacknowledged"]);
  const INACTIVE = new Set(["shelved", "suppressed", "out_of_service"]);

  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const ui = {};
  let me = { user: null, login_to_view: false, login_enabled: true };
  let lastState = null;
  let pending = null; // action to retry after a login
  let pollTimer = null;
  let shelveTarget = null;
  let scopesKey = "";

  // --- helpers -------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "testid") node.dataset.testid = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function fmtValue(v, unit) {
    if (v === null || v === undefined) return "—";
    let text;
    if (typeof v === "number") text = Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 1 : 2);
    else if (typeof v === "boolean") text = v ? "ON" : "off";
    else text = String(v);
    return unit ? `${text} ${unit}` : text;
  }

  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 24) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  const human = (text) => String(text).replace(/_/g, " ");
  const isUnacked = (a) => String(a.state).endsWith("_unacknowledged");
  const alarmKey = (a) => `${a.rule}\u0000${a.subject}`;

  function showMessage(text, kind) {
    ui.message.textContent = text;
    ui.message.className = `banner message ${kind || ""}`;
    ui.message.hidden = !text;
    clearTimeout(showMessage.timer);
    if (text) showMessage.timer = setTimeout(() => { ui.message.hidden = true; }, 6000);
  }

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method === "POST") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, ok: response.ok, data };
  }

  // --- session -------------------------------------------------------------------------------

  function renderUser() {
    ui.user.hidden = !me.user;
    ui.user.textContent = me.user ? `Logged in: ${me.user}` : "";
    ui.loginOpen.hidden = Boolean(me.user);
    ui.logout.hidden = !me.user;
  }

  async function loadMe() {
    try {
      const r = await api("GET", "/api/me");
      if (r.ok && r.data) me = r.data;
    } catch (e) { /* the poll reports the connection */ }
    renderUser();
  }

  function openLogin(reason) {
    ui.loginReason.textContent = reason || "";
    ui.loginError.hidden = true;
    if (!ui.loginDialog.open) ui.loginDialog.showModal();
    (ui.loginUser.value ? ui.loginPassword : ui.loginUser).focus();
  }

  async function submitLogin(event) {
    event.preventDefault();
    const user = ui.loginUser.value.trim();
    const password = ui.loginPassword.value;
    if (!user || !password) {
      ui.loginError.textContent = "Enter user name and password.";
      ui.loginError.hidden = false;
      return;
    }
    ui.loginSubmit.disabled = true;
    try {
      const r = await api("POST", "/api/login", { user, password });
      if (r.ok) {
        me.user = r.data.user;
        ui.loginPassword.value = "";
        ui.loginDialog.close();
        renderUser();
        const retry = pending;
        pending = null;
        if (retry) await retry();
        poll();
      } else {
        ui.loginError.textContent = (r.data && r.data.message) || `login failed (${r.status})`;
        ui.loginError.hidden = false;
      }
    } catch (e) {
      ui.loginError.textContent = "The gateway does not answer.";
      ui.loginError.hidden = false;
    } finally {
      ui.loginSubmit.disabled = false;
    }
  }

  async function logout() {
    try { await api("POST", "/api/logout"); } catch (e) { /* ignore */ }
    me.user = null;
    renderUser();
    showMessage("Logged out.");
  }

  // An action that needs a user: asks for a login on 401 and then runs again.
  async function act(path, body, done) {
    let r;
    try {
      r = await api("POST", path, body);
    } catch (e) {
      showMessage("The gateway does not answer; the action was not sent.", "bad");
      return false;
    }
    if (r.status === 401) {
      me.user = null;
      renderUser();
      pending = () => act(path, body, done);
      openLogin("Log in to do this.");
      return false;
    }
    if (!r.ok) {
      showMessage((r.data && r.data.message) || `refused (${r.status})`, "bad");
      return false;
    }
    showMessage(done(r.data), "good");
    poll();
    return true;
  }

  // --- alarms --------------------------------------------------------------------------------

  function sortAlarms(list) {
    return list.slice().sort((a, b) =>
      (SEVERITY[a.severity] ?? 9) - (SEVERITY[b.severity] ?? 9) ||
      (b.first_out ? 1 : 0) - (a.first_out ? 1 : 0) ||
      (a.activated_ns ?? Number.MAX_SAFE_INTEGER) - (b.activated_ns ?? Number.MAX_SAFE_INTEGER) ||
      alarmKey(a).localeCompare(alarmKey(b)));
  }

  function buildAlarm() {
    const li = el("li", { testid: "alarm", class: "alarm" });
    const f = {};
    f.sev = el("span", { class: "sev", testid: "alarm-severity" });
    f.firstOut = el("span", { class: "tag firstout", testid: "first-out", text: "FIRST OUT" });
    f.chatter = el("span", { class: "tag", text: "chattering" });
    f.title = el("strong", { class: "alarm-title", testid: "alarm-title" });
    f.state = el("span", { class: "state", testid: "alarm-state" });
    f.value = el("span", { testid: "alarm-value" });
    f.room = el("span", { testid: "alarm-room" });
    f.age = el("span", { testid: "alarm-age" });
    f.subject = el("span", { class: "subject", testid: "alarm-subject" });
    f.note = el("p", { class: "note", testid: "alarm-note" });
    f.ack = el("button", { type: "button", class: "btn primary", testid: "ack-button", text: "Acknowledge" });
    f.shelve = el("button", { type: "button", class: "btn", testid: "shelve-button", text: "Shelve" });
    li.append(
      el("div", { class: "alarm-head" }, f.sev, f.firstOut, f.chatter, f.state),
      f.title,
      el("div", { class: "meta" },
        el("span", {}, "Value ", f.value), el("span", {}, "Room ", f.room), el("span", {}, "Age ", f.age)),
      f.subject, f.note,
      el("div", { class: "alarm-actions" }, f.ack, f.shelve));
    f.ack.addEventListener("click", () => {
      const a = li._alarm;
      act("/api/alarms/acknowledge", { alarms: [{ rule: a.rule, subject: a.subject }] },
        (d) => (d.changed ? `Acknowledged: ${a.title}` : `Already acknowledged: ${a.title}`));
    });
    f.shelve.addEventListener("click", () => openShelve(li._alarm));
    li._f = f;
    return li;
  }

  function updateAlarm(li, a, nowNs) {
    const f = li._f;
    li._alarm = a;
    li.dataset.key = alarmKey(a);
    li.dataset.rule = a.rule;
    li.dataset.subject = a.subject;
    li.dataset.state = a.state;
    li.className = `alarm sev-${a.severity}${isUnacked(a) ? " unack" : ""}${a.first_out ? " first" : ""}`;
    f.sev.textContent = a.severity.toUpperCase();
    f.firstOut.hidden = !a.first_out;
    f.chatter.hidden = !a.chattering;
    f.title.textContent = a.title;
    let state = human(a.state);
    if (a.state === "shelved" && a.shelved_until_ns) {
      state += ` (${fmtAge((a.shelved_until_ns - nowNs) / 1e9)} left)`;
    }
    f.state.textContent = state;
    f.value.textContent = fmtValue(a.value);
    f.room.textContent = a.room || "—";
    f.age.textContent = a.activated_ns ? fmtAge((nowNs - a.activated_ns) / 1e9) : "—";
    f.subject.textContent = `${a.rule} · ${a.subject}`;
    f.note.textContent = a.note || "";
    f.note.hidden = !a.note;
    f.ack.hidden = !isUnacked(a);
    f.shelve.hidden = a.state === "shelved" || a.state === "suppressed" || a.state === "out_of_service";
    f.ack.setAttribute("aria-label", `Acknowledge ${a.title}`);
    f.shelve.setAttribute("aria-label", `Shelve ${a.title}`);
  }

  function syncList(list, items, nowNs) {
    const existing = new Map();
    for (const child of Array.from(list.children)) existing.set(child.dataset.key, child);
    items.forEach((item, i) => {
      const key = alarmKey(item);
      let li = existing.get(key);
      if (li) existing.delete(key); else li = buildAlarm();
      updateAlarm(li, item, nowNs);
      const at = list.children[i];
      if (at !== li) list.insertBefore(li, at || null);
    });
    for (const stale of existing.values()) stale.remove();
  }

  function renderAlarms(state) {
    const all = state.alarms || [];
    const active = sortAlarms(all.filter((a) => ACTIVE.has(a.state) || (!INACTIVE.has(a.state) && a.state !== "normal")));
    const inactive = sortAlarms(all.filter((a) => INACTIVE.has(a.state)));
    syncList(ui.alarmList, active, state.now_ns);
    syncList(ui.inactiveList, inactive, state.now_ns);
    ui.alarmCount.textContent = String(active.length);
    ui.inactiveCount.textContent = String(inactive.length);
    ui.noAlarms.hidden = active.length > 0;
    ui.ackAll.disabled = !active.some(isUnacked);
  }

  function ackAll() {
    const refs = (lastState ? lastState.alarms : [])
      .filter((a) => ACTIVE.has(a.state) && isUnacked(a))
      .map((a) => ({ rule: a.rule, subject: a.subject }));
    if (!refs.length) return;
    act("/api/alarms/acknowledge", { alarms: refs }, (d) => `Acknowledged ${d.changed} alarm(s).`);
  }

  function openShelve(alarm) {
    shelveTarget = alarm;
    ui.shelveTarget.textContent = `${alarm.title} (${alarm.rule} · ${alarm.subject})`;
    ui.shelveError.hidden = true;
    ui.shelveDialog.showModal();
    ui.shelveReason.focus();
  }

  async function submitShelve(event) {
    event.preventDefault();
    const minutes = Number(ui.shelveMinutes.value);
    const reason = ui.shelveReason.value.trim();
    if (!(minutes > 0) || !reason) {
      ui.shelveError.textContent = "Give the minutes (more than 0) and a reason.";
      ui.shelveError.hidden = false;
      return;
    }
    const a = shelveTarget;
    ui.shelveDialog.close();
    const ok = await act("/api/alarms/shelve",
      { alarm: { rule: a.rule, subject: a.subject }, minutes, reason },
      () => `Shelved for ${minutes} min: ${a.title}`);
    if (ok) ui.shelveReason.value = "";
  }

  // --- suppressions --------------------------------------------------------------------------

  async function submitSuppress(event) {
    event.preventDefault();
    const scope = ui.suppressScope.value.trim();
    const minutes = Number(ui.suppressMinutes.value);
    const reason = ui.suppressReason.value.trim();
    if (!scope || !(minutes > 0) || !reason) {
      showMessage("Suppress needs a scope, the minutes (more than 0) and a reason.", "bad");
      return;
    }
    const ok = await act("/api/suppress", { scope, minutes, reason },
      () => `Suppressed ${scope} for ${minutes} min.`);
    if (ok) ui.suppressReason.value = "";
  }

  async function submitUnsuppress(event) {
    event.preventDefault();
    const scope = ui.unsuppressScope.value.trim();
    if (!scope) { showMessage("Give the scope to release.", "bad"); return; }
    const ok = await act("/api/unsuppress", { scope }, () => `Released ${scope}.`);
    if (ok) ui.unsuppressScope.value = "";
  }

  function renderSuppressions(state) {
    const list = state.suppressions || [];
    ui.suppressions.replaceChildren(...(list.length ? list.map((x) => el("li",
      { testid: "suppression", "data-scope": x.scope },
      el("strong", { text: x.scope }), ` — ${x.reason} (by ${x.actor}, until `,
      new Date(x.until_ns / 1e6).toLocaleString(), ")")) :
      [el("li", { class: "hint", text: "No suppressions in force." })]));
  }

  function renderScopes(state) {
    const ids = new Set();
    for (const room of state.rooms || []) {
      ids.add(room.id);
      for (const d of room.devices || []) ids.add(d.id);
    }
    for (const a of state.alarms || []) ids.add(a.rule);
    const sorted = Array.from(ids).sort();
    const key = sorted.join("\n");
    if (key === scopesKey) return;
    scopesKey = key;
    ui.scopes.replaceChildren(...sorted.map((id) => el("option", { value: id })));
  }

  // --- readings and health -------------------------------------------------------------------

  function renderRooms(state) {
    const rooms = (state.rooms || []).map((room) => {
      const devices = (room.devices || []).map((d) => {
        const status = d.online === true ? "online" : d.online === false ? "OFFLINE" : "unknown";
        const rows = (d.points || []).map((p) => {
          const bad = p.quality !== "good";
          const value = p.label ? `${p.label} (${fmtValue(p.value)})` : fmtValue(p.value, p.unit);
          return el("tr", { testid: "point", "data-point": p.name, class: bad ? "bad" : "" },
            el("th", { scope: "row" }, p.name),
            el("td", { testid: "point-value", class: "num" }, value),
            el("td", {}, el("span", { testid: "point-quality", class: `quality q-${p.quality}` },
              bad ? `⚠ ${human(p.quality)}` : "good")),
            el("td", { class: "num" }, fmtAge(p.age_s)));
        });
        return el("article", {
          testid: "device", "data-device-id": d.id,
          class: `device ${d.online === false ? "offline" : ""}`,
        },
        el("div", { class: "device-head" },
          el("h4", {}, d.name ? `${d.name} (${d.id})` : d.id),
          el("span", { testid: "device-status", class: `status s-${status.toLowerCase()}` }, status)),
        el("p", { class: "hint" }, `bus ${d.bus}`),
        d.last_error ? el("p", { class: "error", testid: "device-error" }, d.last_error) : null,
        rows.length ? el("div", { class: "scroll" }, el("table", { class: "grid points" },
          el("thead", {}, el("tr", {},
            el("th", { scope: "col" }, "Point"), el("th", { scope: "col" }, "Value"),
            el("th", { scope: "col" }, "Quality"), el("th", { scope: "col" }, "Age"))),
          el("tbody", {}, ...rows))) : null);
      });
      return el("section", { testid: "room", "data-room-id": room.id, class: "room" },
        el("h3", {}, `${room.name || room.id} `, el("span", { class: "hint" }, human(room.type))),
        el("div", { class: "devices" }, ...devices));
    });
    ui.rooms.replaceChildren(...rooms);
  }

  function renderHealth(state) {
    const h = state.health;
    const items = [
      ["Uplink", h.uplink, "uplink"],
      ["Devices online", `${h.devices_online} / ${h.devices_total}`, "devices-online"],
      ["Outbox", h.outbox_depth === null || h.outbox_depth === undefined ? "—" : String(h.outbox_depth), "outbox"],
      ["Uptime", fmtAge(h.uptime_s), "uptime"],
      ["Config", "v" + h.config_version + (h.config_sha256 ? " · " + h.config_sha256.slice(0, 8) : ""), "config"],
    ];
    ui.health.replaceChildren(...items.flatMap(([k, v, id]) =>
      [el("dt", {}, k), el("dd", { testid: id, class: id === "uplink" && h.uplink !== "connected" ? "warn" : "" }, v)]));
    ui.buses.tBodies[0].replaceChildren(...h.buses.map((b) =>
      el("tr", { testid: "bus", "data-bus-id": b.id, class: b.devices_online < b.devices_total ? "bad" : "" },
        el("th", { scope: "row" }, b.id),
        el("td", { "data-label": "Type" }, b.type),
        el("td", { class: "num", "data-label": "Devices online" }, `${b.devices_online} / ${b.devices_total}`),
        el("td", { class: "num", "data-label": "Polls" }, String(b.polls)),
        el("td", { class: `num ${b.overruns ? "warn" : ""}`, "data-label": "Overruns" }, String(b.overruns)),
        el("td", { class: "num", "data-label": "Last poll" }, `${b.last_poll_ms.toFixed(0)} ms`))));
    ui.outputs.tBodies[0].replaceChildren(...h.outputs.map((o) => {
      const state = o.on === true ? "ON" : o.on === false ? "off" : "unknown";
      const details = [];
      if (o.confirmed === true) details.push("confirmed");
      if (o.confirmed === false) details.push("not confirmed");
      if (o.failed) details.push(`FAILED${o.error ? `: ${o.error}` : ""}`);
      if (o.blocked_by) details.push(`blocked by ${o.blocked_by}`);
      if (o.reasons && o.reasons.length) details.push(`for ${o.reasons.join(", ")}`);
      return el("tr", { testid: "output", "data-output-id": o.id, class: o.failed ? "bad" : o.blocked_by ? "warn" : "" },
        el("th", { scope: "row" }, o.id),
        el("td", { "data-label": "Role" }, human(o.role)),
        el("td", { testid: "output-state", "data-label": "State" }, state),
        el("td", { "data-label": "Details" }, details.join("; ") || "—"));
    }));
    ui.flood.hidden = !h.flood;
  }

  function render(state) {
    lastState = state;
    ui.name.textContent = state.name || state.gateway;
    ui.site.textContent = `${state.site} · ${state.gateway}`;
    document.title = `${countUnacked(state) ? `(${countUnacked(state)}) ` : ""}${state.name || state.gateway} · RoomWarden`;
    renderAlarms(state);
    renderScopes(state);
    renderSuppressions(state);
    renderRooms(state);
    renderHealth(state);
  }

  const countUnacked = (state) => state.alarms.filter((a) => ACTIVE.has(a.state) && isUnacked(a)).length;

  function setConn(ok, text) {
    ui.conn.textContent = text;
    ui.conn.className = `conn ${ok ? "ok" : "bad"}`;
  }

  async function poll() {
    clearTimeout(pollTimer);
    try {
      const r = await api("GET", "/api/state");
      if (r.status === 401) {
        setConn(false, "log in to view");
        if (!ui.loginDialog.open) openLogin("This panel needs a login to view.");
      } else if (r.ok) {
        render(r.data);
        setConn(true, `live · ${new Date().toLocaleTimeString()}`);
      } else {
        setConn(false, `error ${r.status}`);
      }
    } catch (e) {
      setConn(false, "connection lost");
    } finally {
      pollTimer = setTimeout(poll, POLL_MS);
    }
  }

  // --- start ---------------------------------------------------------------------------------

  function init() {
    Object.assign(ui, {
      name: $("gateway-name"), site: $("gateway-site"), conn: $("conn-status"),
      user: $("current-user"), loginOpen: $("login-open"), logout: $("logout"),
      flood: $("flood-banner"), message: $("message"),
      alarmList: $("alarm-list"), inactiveList: $("inactive-list"), alarmCount: $("alarm-count"),
      inactiveCount: $("inactive-count"), noAlarms: $("no-alarms"), ackAll: $("ack-all"),
      suppressForm: $("suppress-form"), suppressScope: $("suppress-scope"),
      suppressMinutes: $("suppress-minutes"), suppressReason: $("suppress-reason"),
      unsuppressForm: $("unsuppress-form"), unsuppressScope: $("unsuppress-scope"),
      scopes: document.getElementById("scopes"), suppressions: $("suppressions"),
      rooms: $("rooms"), health: $("health-summary"), buses: $("buses"), outputs: $("outputs"),
      loginDialog: $("login-dialog"), loginForm: $("login-form"), loginUser: $("login-user"),
      loginPassword: $("login-password"), loginError: $("login-error"), loginReason: $("login-reason"),
      loginSubmit: $("login-submit"), loginCancel: $("login-cancel"),
      shelveDialog: $("shelve-dialog"), shelveForm: $("shelve-form"), shelveTarget: $("shelve-target"),
      shelveMinutes: $("shelve-minutes"), shelveReason: $("shelve-reason"), shelveError: $("shelve-error"),
      shelveCancel: $("shelve-cancel"),
    });
    ui.loginOpen.addEventListener("click", () => openLogin(""));
    ui.logout.addEventListener("click", logout);
    ui.loginForm.addEventListener("submit", submitLogin);
    ui.loginCancel.addEventListener("click", () => { pending = null; ui.loginDialog.close(); });
    ui.shelveForm.addEventListener("submit", submitShelve);
    ui.shelveCancel.addEventListener("click", () => ui.shelveDialog.close());
    ui.ackAll.addEventListener("click", ackAll);
    ui.suppressForm.addEventListener("submit", submitSuppress);
    ui.unsuppressForm.addEventListener("submit", submitUnsuppress);
    loadMe().then(poll);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
