// RoomWarden local alarm panel. No framework, no network beyond this gateway.
"use strict";

(() => {
  const POLL_MS = 1500;
  const STALE_MS = 4000;   // no fresh state for this long: the page says so, loudly
  const FETCH_MS = 3500;   // a request that hangs longer counts as no answer
  const SEVERITY = { critical: 0, major: 1, minor: 2, warning: 3 };
  const ACTIVE = new Set(["active_unacknowledged", "active_acknowledged", "returned_unacknowledged"]);
  const INACTIVE = new Set(["shelved", "suppressed", "out_of_service"]);

  const { el, fmtAge, human, renderRooms, renderHealth, buildAlarm, updateAlarm, isUnacked, alarmKey } =
    window.RoomWardenViews;
  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const ui = {};
  let me = { user: null, login_to_view: false, login_enabled: true };
  let lastState = null;
  let pending = null; // action to retry after a login
  let pollTimer = null;
  let shelveTarget = null;
  let scopesKey = "";
  let lastOkAt = null;     // performance.now() of the last state received
  let lastOkWall = null;   // Date of the same, for the banner
  let announced = null;    // alarm keys already announced to screen readers

  // --- helpers -------------------------------------------------------------------------------


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
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_MS);
    init.signal = abort.signal;
    let response;
    try { response = await fetch(path, init); } finally { clearTimeout(timer); }
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
      showMessage("No answer from the gateway in time: the action may not have been carried out — check the alarm list.", "bad");
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

  const cardActions = {
    acknowledge: (a) => act("/api/alarms/acknowledge", { alarms: [{ rule: a.rule, subject: a.subject }] },
      (d) => (d.changed ? `Acknowledged: ${a.title}` : `Already acknowledged: ${a.title}`)),
    shelve: (a) => openShelve(a),
  };

  function syncList(list, items, state) {
    const existing = new Map();
    for (const child of Array.from(list.children)) existing.set(child.dataset.key, child);
    items.forEach((item, i) => {
      const key = alarmKey(item);
      let li = existing.get(key);
      if (li) existing.delete(key); else li = buildAlarm(cardActions);
      updateAlarm(li, item, state);
      const at = list.children[i];
      if (at !== li) list.insertBefore(li, at || null);
    });
    for (const stale of existing.values()) stale.remove();
  }

  function renderAlarms(state) {
    const all = state.alarms || [];
    const active = sortAlarms(all.filter((a) => ACTIVE.has(a.state) || (!INACTIVE.has(a.state) && a.state !== "normal")));
    const inactive = sortAlarms(all.filter((a) => INACTIVE.has(a.state)));
    syncList(ui.alarmList, active, state);
    syncList(ui.inactiveList, inactive, state);
    ui.loading.hidden = true;
    announce(active);
    ui.alarmCount.textContent = String(active.length);
    ui.inactiveCount.textContent = String(inactive.length);
    ui.noAlarms.hidden = active.length > 0;
    ui.ackAll.disabled = !active.some(isUnacked);
  }

  // New unacknowledged alarms are read out by screen readers (not the first state's).
  function announce(active) {
    const keys = new Set(active.map(alarmKey));
    if (announced !== null) {
      const fresh = active.filter((a) => !announced.has(alarmKey(a)) && isUnacked(a));
      if (fresh.length) {
        ui.announcer.textContent = fresh.map((a) =>
          `New ${a.severity} alarm: ${a.title}, ${a.room_name || a.room || ""}`).join(". ");
      }
    }
    announced = keys;
  }

  function ackAll() {
    const refs = (lastState ? lastState.alarms : [])
      .filter((a) => ACTIVE.has(a.state) && isUnacked(a))
      .map((a) => ({ rule: a.rule, subject: a.subject }));
    if (!refs.length) return;
    act("/api/alarms/acknowledge", { alarms: refs }, (d) => `Acknowledged ${d.changed} alarm(s).`);
  }

  // An output held on until an operator resets it (e.g. a battery room's charge inhibit):
  // asked to confirm first, since releasing it lets the equipment run (charge) again.
  function resetOutput(o) {
    const words = `Reset ${o.id} (${human(o.role)})? It is held on since an alarm switched it on; ` +
      "reset only once the cause has been checked. It stays on while an alarm still demands it.";
    if (!window.confirm(words)) return;
    act("/api/outputs/reset", { output: o.id }, (d) => (d.note ? `Reset: ${d.note}.` : `Reset: ${o.id}.`));
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

  // --- freshness -----------------------------------------------------------------------------

  function checkStale() {
    const now = performance.now();
    const age = lastOkAt === null ? null : (now - lastOkAt) / 1000;
    const stale = age === null ? now > STALE_MS : age * 1000 > STALE_MS;
    document.body.classList.toggle("stale", stale && lastState !== null);
    ui.content.dataset.stale = String(stale);
    ui.content.setAttribute("aria-busy", String(stale));
    if (!stale) { ui.stale.hidden = true; return; }
    ui.stale.textContent = lastState === null
      ? "NO DATA: the gateway does not answer. Alarms are NOT known — check the room or the gateway."
      : `NO LIVE DATA: the gateway has not answered for ${fmtAge(age)}. Everything below is from ` +
        `${lastOkWall.toLocaleTimeString([], { hourCycle: "h23" })} and may be out of date.`;
    ui.stale.hidden = false;
    if (lastState === null) ui.loading.textContent = "The gateway does not answer — alarms are not known.";
  }

  // --- sound ---------------------------------------------------------------------------------

  function renderSound(st) {
    ui.silenceHere.hidden = !st.pattern;
    const words = st.blocked ? ["Sound blocked", ": tap to allow"] : st.playing ? ["Sounding", " here"]
      : st.silenced ? ["Silenced", " here"] : ["Sound on", ""];
    ui.soundToggle.replaceChildren(words[0], el("span", { class: "long" }, words[1]));
    ui.soundToggle.className = `btn sound ${st.blocked ? "blocked" : st.playing ? "playing" : ""}`;
    ui.soundToggle.setAttribute("aria-pressed", String(st.playing));
    document.body.dataset.sound = st.playing ? "playing" : st.blocked ? "blocked" : "quiet";
  }

  function render(state) {
    lastState = state;
    ui.name.textContent = state.name || state.gateway;
    ui.site.textContent = `${state.site} · ${state.gateway}`;
    document.title = `${countUnacked(state) ? `(${countUnacked(state)}) ` : ""}${state.name || state.gateway} · RoomWarden`;
    renderAlarms(state);
    renderScopes(state);
    renderSuppressions(state);
    renderRooms(ui, state);
    renderHealth(ui, state, { user: me.user, reset: resetOutput });
    if (window.RoomWardenSound) window.RoomWardenSound.update(state.alarms || []);
    if (window.RoomWardenHistory) window.RoomWardenHistory.onState(state, countActive(state));
  }

  const countActive = (state) => state.alarms.filter((a) => ACTIVE.has(a.state)).length;

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
        lastOkAt = performance.now();
        lastOkWall = new Date();
        render(r.data);
        checkStale();
        setConn(true, `live ${new Date().toLocaleTimeString([], { hourCycle: "h23" })}`);
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
      loading: $("loading"), stale: $("stale-banner"), strip: $("outputs-strip"),
      announcer: $("announcer"), content: $("content"), soundToggle: $("sound-toggle"),
      silenceHere: $("silence-here"), notifyEnable: $("notify-enable"),
      suppressOpen: $("suppress-open"), suppressDialog: $("suppress-dialog"), suppressClose: $("suppress-close"),
    });
    ui.suppressOpen.addEventListener("click", () => ui.suppressDialog.showModal());
    ui.suppressClose.addEventListener("click", () => ui.suppressDialog.close());
    const sound = window.RoomWardenSound;
    if (sound) {
      sound.onChange(renderSound);
      renderSound(sound.state());
      ui.silenceHere.addEventListener("click", () => {
        sound.silenceHere();
        showMessage("Silenced in this browser only — the alarms are NOT acknowledged.", "good");
      });
      ui.soundToggle.addEventListener("click", () => sound.unlock());
    }
    if ("Notification" in window && Notification.permission === "default") {
      ui.notifyEnable.hidden = false;
      ui.notifyEnable.addEventListener("click", () => sound.askNotifications().then(() => {
        ui.notifyEnable.hidden = Notification.permission !== "default";
      }));
    }
    setInterval(checkStale, 1000);
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
