// RoomWarden local alarm panel. No framework, no network beyond this gateway.
"use strict";

(() => {
  const POLL_MS = 1500;
  const STALE_MS = 4000;   // no fresh state for this long: the page says so, loudly
  const FETCH_MS = 3500;   // a request that hangs longer counts as no answer
  const SEVERITY = { critical: 0, major: 1, minor: 2, warning: 3 };
  const ACTIVE = new Set(["active_unacknowledged", "active_acknowledged", "returned_unacknowledged"]);
  const INACTIVE = new Set(["shelved", "suppressed", "out_of_service"]);

  const ME_MS = 120000;     // the session is checked this often (and after a reconnect)
  const { el, fmtAge, fmtClock, fmtZone, human, renderRooms, renderHealth, buildAlarm, updateAlarm, isUnacked,
    alarmKey } = window.RoomWardenViews;
  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const ui = {};
  let me = { user: null, may: [], login_to_view: false, login_enabled: true };
  // not logged in: every action is offered (the login is asked for); logged in: the user's
  // rights (panel.users[].may) — a view-only user sees no buttons it would be refused
  const may = (right) => !me.user || !Array.isArray(me.may) || me.may.includes(right);
  let lastState = null;
  let pending = null; // action to retry after a login
  let pollTimer = null;
  let shelveTarget = null;
  let scopesKey = "";
  let lastOkAt = null;     // performance.now() of the last state received
  let lastOkWall = null;   // Date of the same, for the banner
  let announced = null;    // alarm keys already announced to screen readers
  let down = false;        // the last poll got no answer: the next answer is a reconnect

  // --- helpers -------------------------------------------------------------------------------


  // The message stays in view (fixed to the window); an error stays until dismissed, a
  // success or information goes after a while.
  function showMessage(text, kind) {
    ui.messageText.textContent = text;
    ui.message.className = `banner message toast ${kind || ""}`;
    ui.message.setAttribute("role", kind === "bad" ? "alert" : "status");
    ui.message.hidden = !text;
    clearTimeout(showMessage.timer);
    if (text && kind !== "bad") showMessage.timer = setTimeout(() => { ui.message.hidden = true; }, 8000);
  }

  const tz = () => (lastState && lastState.timezone) || "UTC";
  const clock = (ms) => fmtClock(ms * 1e6, tz(), Date.now() * 1e6);

  // A refusal in plain words: a field's reason without the model's name, an alarm by its
  // title rather than rule@subject.
  const FIELDS = { minutes: "Minutes", reason: "Reason", note: "Note", scope: "Scope" };
  function plainError(r) {
    const d = r.data || {};
    if (d.error === "invalid_body" && Array.isArray(d.details) && d.details.length) {
      return d.details.map((x) => {
        const field = String(x.loc || "").split(".").pop();
        let msg = String(x.msg || "is not valid")
          .replace(/^Input should be less than or equal to (\S+)$/, "must be at most $1")
          .replace(/^Input should be greater than (\S+)$/, "must be more than $1")
          .replace(/^String should have at least 1 character$/, "must not be empty")
          .replace(/^String should have at most (\d+) characters$/, "must be at most $1 characters")
          .replace(/^Input should be a valid number.*$/, "must be a number");
        if (field === "minutes" && /at most 10080$/.test(msg)) msg += " (7 days)";
        return `${FIELDS[field] || "A value"} ${msg}.`;
      }).join(" ");
    }
    let text = d.message || `refused (${r.status})`;
    for (const a of (lastState && lastState.alarms) || []) {
      text = text.split(`${a.rule}@${a.subject}`).join(`“${a.title}”`);
    }
    return text.charAt(0).toUpperCase() + text.slice(1);
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
    ui.user.replaceChildren(...(me.user ? [el("span", { class: "long" }, "Logged in: "), me.user] : []));
    ui.user.title = me.user ? `Logged in: ${me.user}` : "";
    ui.loginOpen.hidden = Boolean(me.user);
    ui.logout.hidden = !me.user;
    if (lastState) renderAlarms(lastState); // Reset and Unshelve are for a user only
  }

  // Who this browser's session is now: after a reconnect (a restart logs everyone out) and
  // every ME_MS (a session ends after session_ttl).
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
        me.may = r.data.may;
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
    showMessage("Logged out.", "good");
  }

  // An action that needs a user: asks for a login on 401 and then runs again. `done(data)`
  // gives the words of a success ([text, kind] for information); `opts.button` is disabled
  // while the request runs (a double click sends one); `opts.refused(text)` shows a refusal
  // elsewhere than the message (the shelve dialog).
  async function act(path, body, done, opts) {
    const o = opts || {};
    if (o.button) {
      if (o.button.disabled) return false;
      o.button.disabled = true;
    }
    let r;
    try {
      r = await api("POST", path, body);
    } catch (e) {
      showMessage("No answer from the gateway in time: the action may not have been carried out — check the alarm list.", "bad");
      return false;
    } finally {
      if (o.button) o.button.disabled = false;
    }
    if (r.status === 401) {
      me.user = null;
      renderUser();
      pending = () => act(path, body, done, opts);
      openLogin("Your session has ended: log in to do this.");
      return false;
    }
    if (!r.ok) {
      if (o.refused) o.refused(plainError(r)); else showMessage(plainError(r), "bad");
      return false;
    }
    const said = done(r.data);
    if (Array.isArray(said)) showMessage(said[0], said[1]); else showMessage(said, "good");
    poll();
    return true;
  }

  // Someone else got there first: information, not an error.
  function skippedWords(skipped) {
    return skipped.map((x) => {
      const title = x.title || `${x.rule} · ${x.subject}`;
      if (x.acked_by) return `already acknowledged by ${x.acked_by}: ${title}`;
      if (x.state === "shelved" || x.state === "suppressed" || x.state === "out_of_service") {
        return `${human(x.state)}: ${title}`;
      }
      return `already acknowledged or cleared: ${title}`;
    }).join("; ");
  }

  // --- alarms --------------------------------------------------------------------------------

  // By severity; within one, those waiting for an acknowledgement first (the flood's first-out,
  // a room's first-out, then the newest), then the rest (the same first-outs, then the oldest).
  function sortAlarms(list) {
    const waits = (a) => (isUnacked(a) ? 0 : 1);
    const since = (a) => a.activated_ns ?? Number.MAX_SAFE_INTEGER;
    return list.slice().sort((a, b) =>
      (SEVERITY[a.severity] ?? 9) - (SEVERITY[b.severity] ?? 9) ||
      waits(a) - waits(b) ||
      (b.flood_first_out ? 1 : 0) - (a.flood_first_out ? 1 : 0) ||
      (b.first_out ? 1 : 0) - (a.first_out ? 1 : 0) ||
      (isUnacked(a) ? since(b) - since(a) : since(a) - since(b)) ||
      alarmKey(a).localeCompare(alarmKey(b)));
  }

  const ref = (a) => ({ rule: a.rule, subject: a.subject });
  const cardActions = {
    acknowledge: (a, button) => act("/api/alarms/acknowledge", { alarms: [ref(a)], skip_acknowledged: true },
      (d) => (d.changed ? `Acknowledged: ${a.title}` : [`Nothing to do — ${skippedWords(d.skipped || [])}.`, "info"]),
      { button }),
    reset: (a, button) => act("/api/alarms/reset", { alarm: ref(a) },
      (d) => (d.changed ? `Reset: ${a.title}` : [`Already reset: ${a.title}`, "info"]), { button }),
    shelve: (a) => openShelve(a),
    unshelve: (a, button) => act("/api/alarms/unshelve", { alarm: ref(a) }, () => `Unshelved: ${a.title}`,
      { button }),
  };

  function syncList(list, items, state) {
    const existing = new Map();
    for (const child of Array.from(list.children)) existing.set(child.dataset.key, child);
    items.forEach((item, i) => {
      const key = alarmKey(item);
      let li = existing.get(key);
      if (li) existing.delete(key); else li = buildAlarm(cardActions);
      updateAlarm(li, item, state, me.user, may);
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
    const starting = state.evaluated === false; // the gateway has not evaluated every device yet
    ui.starting.hidden = !starting;
    ui.noAlarms.hidden = active.length > 0 || starting;
    ui.ackAll.disabled = !active.some(isUnacked);
    ui.ackAll.hidden = !may("acknowledge_all") && !may("acknowledge");
    ui.suppressOpen.hidden = !may("suppress");
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

  // Acknowledges the alarms this page shows waiting; those someone else acknowledged
  // meanwhile are skipped and counted (never a refusal of the whole list).
  function ackAll() {
    const refs = (lastState ? lastState.alarms : [])
      .filter((a) => ACTIVE.has(a.state) && isUnacked(a)).map(ref);
    if (!refs.length) return;
    act("/api/alarms/acknowledge", { alarms: refs, skip_acknowledged: true }, (d) => {
      const skipped = d.skipped || [];
      const done = `Acknowledged ${d.changed} alarm${d.changed === 1 ? "" : "s"}.`;
      if (!skipped.length) return done;
      return [`${done} ${skipped.length} no longer waited — ${skippedWords(skipped)}.`, "info"];
    }, { button: ui.ackAll });
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

  // The dialog stays open until the gateway answers: a refusal is shown in it.
  async function submitShelve(event) {
    event.preventDefault();
    const minutes = Number(ui.shelveMinutes.value);
    const reason = ui.shelveReason.value.trim();
    const refused = (text) => {
      ui.shelveError.textContent = text;
      ui.shelveError.hidden = false;
    };
    if (!(minutes > 0) || !reason) { refused("Give the minutes (more than 0) and a reason."); return; }
    const a = shelveTarget;
    ui.shelveError.hidden = true;
    const ok = await act("/api/alarms/shelve", { alarm: ref(a), minutes, reason }, () => {
      if (ui.shelveDialog.open) ui.shelveDialog.close();
      return `Shelved for ${minutes} min: ${a.title}`;
    }, { button: ui.shelveSubmit, refused });
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
    const ok = await act("/api/suppress", { scope, minutes, reason }, (d) => {
      const done = `Suppressed ${scope} for ${minutes} min.`;
      const n = d.covers || 0;
      if (!n) return `${done} No alarm in the list was hidden.`;
      const names = (d.alarms || []).map((a) => a.title).join("; ");
      const more = d.more ? ` and ${d.more} more` : "";
      return [`${done} Hidden now: ${n} alarm${n === 1 ? "" : "s"} — ${names}${more}.`, "info"];
    });
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
      fmtClock(x.until_ns, state.timezone, state.now_ns), ")")) :
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
        `${clock(lastOkWall.getTime())} and may be out of date.`;
    ui.stale.hidden = false;
    if (lastState === null) ui.loading.textContent = "The gateway does not answer — alarms are not known.";
  }

  // --- sound ---------------------------------------------------------------------------------

  function renderSound(st) {
    ui.silenceHere.hidden = !st.pattern;
    // short words first: on a phone only they show, and each state reads apart
    const words = st.blocked ? ["No sound", ": tap to allow"] : st.playing ? ["Sounding", " here"]
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
    ui.timeZone.textContent = `Times are site time: ${fmtZone(state.timezone || "UTC")}.`;
    renderRooms(ui, state);
    renderHealth(ui, state, { user: me.user, reset: resetOutput, may });
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
      if (down) { down = false; loadMe(); } // a reconnect: is the session still there?
      if (r.status === 401) {
        setConn(false, "log in to view");
        if (!ui.loginDialog.open) openLogin("This panel needs a login to view.");
      } else if (r.ok) {
        lastOkAt = performance.now();
        lastOkWall = new Date();
        render(r.data);
        checkStale();
        setConn(true, `live ${clock(Date.now())}`);
      } else {
        setConn(false, `error ${r.status}`);
      }
    } catch (e) {
      down = true;
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
      flood: $("flood-banner"), message: $("message"), messageText: $("message-text"),
      messageClose: $("message-close"), starting: $("starting"), timeZone: $("time-zone"),
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
      shelveCancel: $("shelve-cancel"), shelveSubmit: $("shelve-submit"),
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
    setInterval(loadMe, ME_MS);
    ui.messageClose.addEventListener("click", () => { ui.message.hidden = true; });
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
