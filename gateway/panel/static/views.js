// RoomWarden panel: what it shows — alarm cards, the readings, the gateway's health and the
// outputs (siren, strobe, fan) — and the small DOM and formatting helpers the panel shares.
"use strict";

window.RoomWardenViews = (() => {
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

  // A time in the site's zone: HH:MM:SS, with the date when not the day of `refNs`.
  function fmtClock(ns, tz, refNs) {
    if (!ns) return "—";
    const when = new Date(ns / 1e6);
    const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    let zone = tz;
    try { new Intl.DateTimeFormat(undefined, { timeZone: zone }); } catch (e) { zone = undefined; }
    const day = (d) => new Intl.DateTimeFormat("en-CA", { timeZone: zone }).format(d);
    const sameDay = day(when) === day(refNs ? new Date(refNs / 1e6) : new Date());
    const fmt = new Intl.DateTimeFormat(undefined, sameDay ? { ...opts, timeZone: zone }
      : { ...opts, month: "short", day: "numeric", timeZone: zone });
    return fmt.format(when);
  }

  // The site's zone once, for the page: "Asia/Shanghai (GMT+8)".
  function fmtZone(tz) {
    try {
      const part = new Intl.DateTimeFormat("en-US", { timeZone: tz, timeZoneName: "shortOffset" })
        .formatToParts(new Date()).find((p) => p.type === "timeZoneName");
      return part ? `${tz} (${part.value})` : tz;
    } catch (e) { return tz || "UTC"; }
  }

  // A short state tag every card shows (also on a phone, where the state text is hidden).
  function stateTag(a) {
    // a shelved or suppressed alarm that still drives its protective outputs says so
    const hiddenTag = { latched: " – LATCHED", active: " – OUTPUTS ON" }[a.hidden] || "";
    if (a.state === "shelved") return [`SHELVED${hiddenTag}`, hiddenTag ? "latched" : "inactive"];
    if (a.state === "suppressed") return [`SUPPRESSED${hiddenTag}`, hiddenTag ? "latched" : "inactive"];
    if (a.state === "out_of_service") return ["OUT OF SERVICE", "inactive"];
    if (a.latched) return isUnacked(a) ? ["LATCHED – ACK NEEDED", "latched"] : ["LATCHED – RESET NEEDED", "latched"];
    if (a.state === "returned_unacknowledged") return ["CLEARED – ACK NEEDED", "cleared"];
    if (a.state === "active_acknowledged") return ["ACKNOWLEDGED", "acked"];
    if (a.state === "active_unacknowledged") return ["ACTIVE", "active"];
    return [human(a.state).toUpperCase(), ""];
  }

  // --- alarm cards ---------------------------------------------------------------------------

  // One alarm card; `actions.acknowledge(alarm)` and `actions.shelve(alarm)` do the buttons.
  function buildAlarm(actions) {
    const li = el("li", { testid: "alarm", class: "alarm" });
    const f = {};
    f.sev = el("span", { class: "sev", testid: "alarm-severity" });
    f.firstOut = el("span", { class: "tag firstout", testid: "first-out", text: "FIRST OUT" });
    // audit F7: the alarm that started a flood, apart from every room's own first-out
    f.floodFirst = el("span", { class: "tag floodfirst", testid: "flood-first-out", text: "FLOOD FIRST OUT" });
    f.chatter = el("span", { class: "tag", text: "chattering" });
    f.drill = el("span", { class: "tag drill", testid: "drill-tag", text: "DRILL" }); // issue 12
    f.tag = el("span", { class: "tag st", testid: "alarm-tag" });
    f.title = el("strong", { class: "alarm-title", testid: "alarm-title" });
    f.room = el("span", { class: "room-name", testid: "alarm-room" });
    f.device = el("span", { testid: "alarm-device" });
    f.location = el("span", { testid: "alarm-location" });
    f.value = el("span", { class: "value", testid: "alarm-value" });
    f.limit = el("span", { testid: "alarm-limit" });
    f.time = el("span", { testid: "alarm-time" });
    f.age = el("span", { testid: "alarm-age" });
    f.state = el("span", { class: "state", testid: "alarm-state" });
    f.ack = el("p", { class: "acked", testid: "alarm-ack" });
    // what to do (the rule's response): open on a wide screen (a row of its own), one tap
    // away on a phone (closed, it sits at the end of the meta line)
    f.responseText = el("p", { testid: "alarm-response-text" });
    f.response = el("details", { class: "todo", testid: "alarm-response" },
      el("summary", { "aria-label": "What to do" }, el("span", { class: "long" }, "What to do"),
        el("span", { class: "todo-mark", "aria-hidden": "true" }, "?")), f.responseText);
    f.response.open = !window.matchMedia("(max-width: 599px)").matches;
    f.subject = el("span", { class: "subject", testid: "alarm-subject" });
    f.ackBtn = el("button", { type: "button", class: "btn primary", testid: "ack-button" },
      "Ack", el("span", { class: "long" }, "nowledge"));
    f.shelve = el("button", { type: "button", class: "btn", testid: "shelve-button" }, "Shelve");
    f.reset = el("button", { type: "button", class: "btn primary", testid: "reset-button" }, "Reset");
    f.unshelve = el("button", { type: "button", class: "btn", testid: "unshelve-button" }, "Unshelve");
    li.append(
      el("div", { class: "alarm-body" },
        el("div", { class: "alarm-head" }, f.sev, f.drill, f.floodFirst, f.firstOut, f.chatter, f.title),
        el("div", { class: "where" }, f.room, f.device, f.location),
        el("div", { class: "meta" }, f.value, f.limit,
          el("span", { class: "when" }, f.time, " · ", f.age), f.response),
        f.ack,
        el("div", { class: "alarm-foot" }, f.state, f.subject)),
      el("div", { class: "alarm-actions" }, f.ackBtn, f.reset, f.shelve, f.unshelve, f.tag));
    f.ackBtn.addEventListener("click", () => actions.acknowledge(li._alarm, f.ackBtn));
    f.reset.addEventListener("click", () => actions.reset(li._alarm, f.reset));
    f.shelve.addEventListener("click", () => actions.shelve(li._alarm));
    f.unshelve.addEventListener("click", () => actions.unshelve(li._alarm, f.unshelve));
    li._f = f;
    return li;
  }

  const numeric = (v) => typeof v === "number";

  // `may(right)`: whether this browser may do it — not logged in, every action is offered
  // (the login is asked for); logged in, only those in the user's `may:` (panel.users).
  const mayAll = () => true;

  // `user`: the logged-in user (null: none) — Reset and Unshelve are offered to a user only.
  function updateAlarm(li, a, state, user, may = mayAll) {
    const f = li._f;
    const nowNs = state.now_ns;
    li._alarm = a;
    li.dataset.key = alarmKey(a);
    li.dataset.rule = a.rule;
    li.dataset.subject = a.subject;
    li.dataset.state = a.state;
    li.className = `alarm sev-${a.severity}${isUnacked(a) ? " unack" : ""}${a.first_out ? " first" : ""}` +
      (a.flood_first_out ? " flood-first" : "");
    f.sev.textContent = a.severity.toUpperCase();
    // in a flood every room's first alarm is a first-out: those tags step back (quieter, in
    // words too) behind the one alarm that started the flood
    const flood = Boolean(state.health && state.health.flood);
    f.floodFirst.hidden = !a.flood_first_out;
    f.firstOut.hidden = !a.first_out || Boolean(a.flood_first_out);
    f.firstOut.textContent = flood ? "room first out" : "FIRST OUT";
    f.firstOut.className = `tag firstout${flood ? " quiet" : ""}`;
    f.chatter.hidden = !a.chattering;
    f.drill.hidden = !a.drill; // issue 12: a live drill's alarm, never a real one
    if (a.drill) li.className += " drill";
    f.title.textContent = a.title;
    const [tagText, tagClass] = stateTag(a);
    f.tag.textContent = tagText;
    f.tag.className = `tag st st-${tagClass}`;
    li.dataset.latched = String(Boolean(a.latched));
    let stateText = human(a.state);
    if (a.state === "shelved" && a.shelved_until_ns) {
      stateText += ` (${fmtAge((a.shelved_until_ns - nowNs) / 1e9)} left)`;
    }
    if (a.hidden === "latched") {
      stateText += " · latched: its outputs stay on; it returns unacknowledged when " +
        (a.state === "shelved" ? "unshelved" : "the suppression ends");
    } else if (a.hidden === "active") {
      stateText += " · its condition is active: its protective outputs stay on";
    }
    f.state.textContent = stateText;
    f.room.textContent = a.room_name || a.room || "—";
    f.room.title = a.room || "";
    f.device.textContent = a.device ? ` · ${a.device_name || a.device}` : "";
    f.device.hidden = !a.device;
    f.location.textContent = a.location ? ` (${a.location})` : "";
    f.location.hidden = !a.location;
    // a measurement reads with its unit and the limit it crossed; a contact, a count or a
    // coincidence reads as its condition in words (never a bare 2, 0 or ON)
    if (a.condition === false) {
      // cleared (returned, or latched waiting for a reset): say so, never the condition as
      // if it were still true; a contact or a measurement gives its reading now
      const now = typeof a.value === "boolean" && a.flag_words
        ? ` — now ${a.flag_words[a.value ? 1 : 0]}`
        : typeof a.value === "boolean" || (numeric(a.value) && a.unit)
          ? ` — now ${fmtValue(a.value, a.unit)}` : "";
      f.value.textContent = `Cleared${now}`;
      f.limit.textContent = a.limit ? `was: ${a.limit}` : "";
    } else if (numeric(a.value) && a.unit && a.limit) {
      f.value.textContent = fmtValue(a.value, a.unit);
      f.limit.textContent = `limit ${a.limit}`;
    } else if (a.limit) {
      f.value.textContent = a.limit;
      f.limit.textContent = "";
    } else {
      f.value.textContent = fmtValue(a.value, a.unit);
      f.limit.textContent = "";
    }
    f.limit.hidden = !f.limit.textContent;
    f.time.textContent = a.activated_ns ? `since ${fmtClock(a.activated_ns, state.timezone, nowNs)}` : "since —";
    f.age.textContent = a.activated_ns ? fmtAge((nowNs - a.activated_ns) / 1e9) : "—";
    if (a.acked_by) {
      f.ack.textContent = `Acknowledged by ${a.acked_by}` +
        (a.acked_ns ? ` at ${fmtClock(a.acked_ns, state.timezone, nowNs)}` : "") +
        (a.acked_note ? ` — “${a.acked_note}”` : "");
    } else {
      f.ack.textContent = "";
    }
    f.ack.hidden = !a.acked_by;
    f.responseText.textContent = a.response || "";
    f.response.hidden = !a.response;
    f.subject.textContent = `${a.rule} · ${a.subject}`;
    const acks = may("acknowledge") || may("acknowledge_all");
    f.ackBtn.hidden = !isUnacked(a) || !acks;
    f.reset.hidden = !(a.latched && !isUnacked(a) && user && acks);
    f.shelve.hidden = a.state === "shelved" || a.state === "suppressed" ||
      a.state === "out_of_service" || !may("shelve");
    f.unshelve.hidden = !(a.state === "shelved" && user && may("shelve"));
    f.ackBtn.setAttribute("aria-label", `Acknowledge ${a.title}`);
    f.reset.setAttribute("aria-label", `Reset ${a.title}`);
    f.shelve.setAttribute("aria-label", `Shelve ${a.title}`);
    f.unshelve.setAttribute("aria-label", `Unshelve ${a.title}`);
    li.setAttribute("aria-label", `${a.drill ? "DRILL " : ""}${a.severity} alarm: ${a.title}, ${f.room.textContent}, ${tagText}` +
      (a.flood_first_out ? ", flood first out" : ""));
  }


  // --- readings and health -------------------------------------------------------------------

  function renderRooms(ui, state) {
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

  // `outputActions`: { user, reset(output) } — a logged-in user gets a Reset button on an
  // output held on until an operator resets it (restore_on_clear: false).
  function renderHealth(ui, state, outputActions) {
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
      const st = outputState(o, state);
      const details = [readBack(o)];
      if (o.failed) details.push(`FAILED${o.error ? `: ${o.error}` : ""}`);
      if (o.blocked_by) details.push(`blocked by ${o.blocked_by}${o.block_reason ? ` — ${o.block_reason}` : ""}`);
      if (o.reasons && o.reasons.length) details.push(`for ${o.reasons.join(", ")}`);
      if (o.held && !(o.reasons || []).includes("held until reset")) details.push("held until reset");
      const cell = el("td", { testid: "output-details", "data-label": "Details" }, details.join("; "));
      if (o.held && outputActions && outputActions.user &&
          (!outputActions.may || outputActions.may("reset_output"))) {
        const reset = el("button", { type: "button", class: "btn", testid: "output-reset-button",
          "aria-label": `Reset ${o.id}` }, "Reset");
        reset.addEventListener("click", () => outputActions.reset(o));
        cell.append(" ", reset);
      }
      return el("tr", { testid: "output", "data-output-id": o.id, "data-held": o.held ? "true" : null,
        class: o.failed ? "bad" : o.blocked_by ? "warn" : "" },
        el("th", { scope: "row" }, o.id),
        el("td", { "data-label": "Role" }, human(o.role)),
        el("td", { testid: "output-state", "data-label": "State" }, st.text),
        cell);
    }));
    renderStrip(ui, state);
    renderFlood(ui, state);
    renderDrill(ui, state);
  }

  // --- the flood banner: since when, and the alarm that started it (audit F7) ---------------
  const FLOOD_WORDS = "Alarm flood: many alarms at once — deal with the first-out and critical ones first.";
  function renderFlood(ui, state) {
    const f = state.flood;
    ui.flood.hidden = !state.health.flood;
    const text = ui.flood.querySelector('[data-testid="flood-text"]');
    const first = ui.flood.querySelector('[data-testid="flood-banner-first-out"]');
    const when = (ns) => fmtClock(ns, state.timezone, state.now_ns);
    // set only when the words change: the banner is an alert, read out again on each change
    const put = (node, words) => { if (node.textContent !== words) node.textContent = words; };
    const o = f && f.first_out;
    const marked = (state.alarms || []).some((a) => a.flood_first_out);
    put(text, !(f && f.since_ns) ? FLOOD_WORDS : `Alarm flood since ${when(f.since_ns)}: many alarms at once — ` +
      (marked ? "start with the alarm that began it (marked FLOOD FIRST OUT), then the critical ones."
        : "deal with the critical ones first."));
    first.hidden = !o;
    if (!o) { put(first, ""); return; }
    const room = o.room_name || o.room;
    put(first, `Flood first-out: ${o.title || `${o.rule} · ${o.subject}`}` + (room ? ` — ${room}` : "") +
      (o.activated_ns ? `, since ${when(o.activated_ns)}.` : ", now back to normal."));
  }

  // --- issue 12: the live drill running now, as a banner under the flood banner -------------
  function renderDrill(ui, state) {
    let banner = document.querySelector('[data-testid="drill-banner"]');
    if (!banner) {
      banner = el("div", { testid: "drill-banner", class: "banner message drill", role: "status" });
      ui.flood.after(banner);
    }
    const d = state.drill;
    banner.hidden = !d;
    banner.textContent = d ? `DRILL in progress: ${d.title} — room ${d.room}, ${d.mode} drill ` +
      `(${d.mode === "silent" ? "outputs held" : "outputs driven for real"}), by ${d.actor}, ` +
      `ends by ${fmtClock(d.ends_ns, state.timezone, state.now_ns)}. Alarms marked DRILL are ` +
      "the drill's, not real." : "";
  }

  // What the read-back says: `confirmed` is the state the coil was read back in.
  function readBack(o) {
    if (o.confirmed === null || o.confirmed === undefined) return "not confirmed yet";
    if (o.on === null || o.on === undefined) return `read back ${o.confirmed ? "on" : "off"}`;
    return o.confirmed === o.on ? `confirmed ${o.on ? "on" : "off"}`
      : `read back ${o.confirmed ? "on" : "off"}: does not follow`;
  }

  const LOUD_ROLES = { siren: "Siren", strobe: "Strobe", exhaust_fan: "Fan" };

  // sounding / silenced / off / FAILED, from the plan and the alarms it serves
  function outputState(o, state) {
    if (o.failed) return { text: "FAILED", cls: "failed" };
    if (o.on === true) return { text: o.role === "exhaust_fan" ? "RUNNING" : o.role === "siren" ? "SOUNDING" : "ON", cls: "on" };
    if (o.on === null || o.on === undefined) return { text: "unknown", cls: "unknown" };
    const rooms = new Set(o.rooms || []);
    const silenced = o.silence_on_ack && (state.alarms || []).some((a) => a.state === "active_acknowledged"
      && (a.actions || []).includes(o.role) && (!rooms.size || rooms.has(a.room)));
    return silenced ? { text: "silenced", cls: "silenced" } : { text: "off", cls: "off" };
  }

  function renderStrip(ui, state) {
    const outs = state.health.outputs.filter((o) => o.role in LOUD_ROLES);
    ui.strip.replaceChildren(...outs.map((o) => {
      const st = outputState(o, state);
      return el("span", { testid: "strip-output", "data-output-id": o.id, class: `chip o-${st.cls}` },
        `${LOUD_ROLES[o.role]} `, el("span", { class: "chip-id" }, `${o.id}`), ": ",
        el("strong", {}, st.text));
    }));
    ui.strip.hidden = outs.length === 0;
  }

  return { el, fmtValue, fmtAge, fmtClock, fmtZone, human, renderRooms, renderHealth, buildAlarm, updateAlarm,
    isUnacked, alarmKey };
})();
