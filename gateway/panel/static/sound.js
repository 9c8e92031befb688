// RoomWarden panel: the alarm's sound (Web Audio), notifications and vibration, in this
// browser only. "Silence here" quiets this browser until a new alarm comes; it acknowledges
// nothing at the gateway.
"use strict";

window.RoomWardenSound = (() => {
  const STORE = "roomwarden.silenced";
  // critical: a fast two-tone (like an evacuation tone); major: three short beeps every 2 s
  const PATTERNS = {
    critical: { period: 1.0, tones: [[0, 0.45, 960], [0.5, 0.45, 720]] },
    major: { period: 2.0, tones: [[0, 0.15, 660], [0.25, 0.15, 660], [0.5, 0.15, 660]] },
  };
  const LOUD = ["critical", "major"];

  let ctx = null;
  let timer = null;
  let pattern = null; // "critical" | "major" | null: what should sound now
  let nextAt = 0;
  let sounding = [];  // keys of the alarms that ask for sound now
  let known = null;   // keys seen in the previous state (null before the first)
  let silenced = new Set(load());
  const listeners = [];

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE) || "[]"); } catch (e) { return []; }
  }

  function save() {
    try { localStorage.setItem(STORE, JSON.stringify(Array.from(silenced).slice(-500))); } catch (e) { /* private mode */ }
  }

  function context() {
    if (ctx) return ctx;
    const Ctor = window.AudioContext || window.webkitAudioContext;
    if (!Ctor) return null;
    ctx = new Ctor();
    ctx.onstatechange = changed;
    return ctx;
  }

  function beep(at, length, freq) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
    gain.gain.setValueAtTime(0.25, at + length - 0.03);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + length);
    osc.connect(gain).connect(ctx.destination);
    osc.start(at);
    osc.stop(at + length + 0.01);
  }

  // Schedules the pattern a little ahead; runs only while something should sound.
  function tick() {
    if (!pattern || !ctx || ctx.state !== "running") return;
    const p = PATTERNS[pattern];
    const now = ctx.currentTime;
    if (nextAt < now) nextAt = now + 0.05;
    while (nextAt < now + 1.2) {
      for (const [offset, length, freq] of p.tones) beep(nextAt + offset, length, freq);
      nextAt += p.period;
    }
  }

  function start(kind) {
    const c = context();
    pattern = kind;
    if (!c) { changed(); return; }
    if (c.state !== "running") c.resume().catch(() => {}).then(changed);
    if (!timer) timer = setInterval(tick, 500);
    tick();
    changed();
  }

  function stop() {
    pattern = null;
    clearInterval(timer);
    timer = null;
    if (ctx && ctx.state === "running") ctx.suspend().then(changed, changed);
    changed();
  }

  const keyOf = (a) => `${a.rule}\u0000${a.subject}\u0000${a.activated_ns || ""}`;

  function notify(alarm) {
    if ("vibrate" in navigator) {
      try { navigator.vibrate(alarm.severity === "critical" ? [600, 200, 600, 200, 600] : [400, 200, 400]); } catch (e) { /* not allowed */ }
    }
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const where = [alarm.room_name || alarm.room, alarm.device_name || alarm.device].filter(Boolean).join(" · ");
    try {
      new Notification(`${alarm.severity.toUpperCase()}: ${alarm.title}`,
        { body: where, tag: keyOf(alarm), requireInteraction: alarm.severity === "critical" });
    } catch (e) { /* some phones allow notifications only from a service worker */ }
  }

  // The active unacknowledged critical/major alarms, from each new state.
  function update(alarms) {
    const loud = alarms.filter((a) => LOUD.includes(a.severity) && String(a.state).endsWith("_unacknowledged")
      && a.state.startsWith("active"));
    const keys = loud.map(keyOf);
    if (known !== null) for (const a of loud) if (!known.has(keyOf(a))) notify(a);
    known = new Set(keys);
    sounding = keys.filter((k) => !silenced.has(k));
    // a silence covers only the alarms it was given: forget keys that are gone
    const before = silenced.size;
    silenced = new Set(Array.from(silenced).filter((k) => known.has(k)));
    if (silenced.size !== before) save();
    const worst = loud.filter((a) => !silenced.has(keyOf(a))).some((a) => a.severity === "critical") ? "critical"
      : sounding.length ? "major" : null;
    if (worst) { if (worst !== pattern || !timer) start(worst); } else if (pattern) stop();
    else changed();
  }

  function silenceHere() {
    for (const k of sounding) silenced.add(k);
    sounding = [];
    save();
    stop();
  }

  // Browsers start audio only after a click or key: any gesture unlocks it.
  function unlock() {
    const c = context();
    if (c && c.state !== "running" && pattern) c.resume().then(() => { tick(); changed(); }, changed);
  }

  function state() {
    return {
      pattern,
      context: ctx ? ctx.state : "none",
      playing: Boolean(pattern && ctx && ctx.state === "running"),
      blocked: Boolean(pattern && (!ctx || ctx.state !== "running")),
      silenced: silenced.size > 0 && !pattern,
    };
  }

  function changed() { for (const f of listeners) f(state()); }

  for (const ev of ["pointerdown", "keydown", "touchstart"]) document.addEventListener(ev, unlock, { capture: true });

  return {
    update, silenceHere, state, unlock,
    onChange: (f) => listeners.push(f),
    askNotifications: () => ("Notification" in window) ? Notification.requestPermission() : Promise.resolve("denied"),
  };
})();
