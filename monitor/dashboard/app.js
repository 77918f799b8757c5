// wirewatch dashboard: live alerts (server-sent events), hits per rule (inline SVG),
// a story view, feed health. Plain JavaScript, no build step, nothing from elsewhere.
// Every value from the API is put in the page as text (feed titles are untrusted).
"use strict";

const TOKEN_KEY = "wirewatch-token";
const COLOURS = ["#0b5cad", "#b3261e", "#1c7c3a", "#a86400", "#6a3cb5", "#00838f", "#ad1457", "#5d4037"];
const state = { token: sessionStorage.getItem(TOKEN_KEY) || "", alerts: new Map(), chartTimer: 0 };

function $(id) { return document.getElementById(id); }
function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function when(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

function isoWhen(text) { return text ? text.replace("T", " ").replace(/\.\d+/, "").slice(0, 20) : "-"; }

function headers() { return state.token ? { Authorization: "Bearer " + state.token } : {}; }

function askToken() {
  $("token-form").hidden = false;
  $("token-input").focus();
}

async function api(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (response.status === 401) { askToken(); throw new Error("unauthorized"); }
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

// ---- live alerts ---------------------------------------------------------------

function channelsText(channels) {
  const names = Object.keys(channels || {}).sort();
  return names.length ? names.map((name) => name + ": " + channels[name]).join(", ") : "queued";
}

function alertRow(alert) {
  const link = /^https?:\/\//.test(alert.url || "")
    ? el("a", { href: alert.url, target: "_blank", rel: "noopener noreferrer" }, alert.title)
    : el("span", {}, alert.title);
  const story = el("button", { class: "link", type: "button", onclick: () => showStory(alert.story) },
    (alert.story || "").slice(0, 10));
  return el("tr", { "data-alert-id": alert.id, "data-rule": alert.rule },
    el("td", {}, when(alert.raised_at)),
    el("td", { class: "sev-" + alert.severity }, alert.severity),
    el("td", {}, alert.rule),
    el("td", { class: "title" }, link),
    el("td", {}, story),
    el("td", { class: "channels" }, channelsText(alert.channels)));
}

function addAlert(alert, live) {
  if (state.alerts.has(alert.id)) return;
  state.alerts.set(alert.id, alert);
  const row = alertRow(alert);
  const rows = $("alert-rows");
  if (live) { row.classList.add("new"); rows.prepend(row); } else rows.append(row);
  $("no-alerts").hidden = true;
}

function onEvent(name, data) {
  if (name === "raised") {
    const alert = {
      id: data.id, rule: data.rule, title: data.title, url: data.url, story: data.story,
      severity: data.severity || "info", channels: {},
      raised_at: Number(String(data.stream_id).split("-")[0]) / 1000,
    };
    addAlert(alert, true);
    clearTimeout(state.chartTimer);
    state.chartTimer = setTimeout(loadHits, 500);
    return;
  }
  const alert = state.alerts.get(data.id);
  if (!alert || !data.channel) return;
  alert.channels[data.channel] = { digest: "held for digest", skip: "skipped" }[name] || name;
  const cell = document.querySelector(`tr[data-alert-id="${CSS.escape(data.id)}"] td.channels`);
  if (cell) cell.textContent = channelsText(alert.channels);
}

function parseEvent(block) {
  const event = { id: "", event: "message", data: "" };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") event.id = value;
    else if (field === "event") event.event = value;
    else if (field === "data") event.data += (event.data ? "\n" : "") + value;
  }
  return event;
}

function setStream(text, open) {
  $("stream-state").textContent = "stream: " + text;
  $("stream-state").className = "badge " + (open ? "ok" : "bad");
  document.body.dataset.stream = open ? "open" : "closed";
}

// Server-sent events read with fetch (EventSource cannot send the bearer token);
// reconnects after 2 s and resumes with Last-Event-ID, like EventSource would.
async function stream() {
  let last = "";
  let first = true;
  for (;;) {
    try {
      const hdrs = headers();
      if (last) hdrs["Last-Event-ID"] = last;
      const response = await fetch("/api/alerts/stream", { headers: hdrs, cache: "no-store" });
      if (response.status === 401) { setStream("needs a token", false); askToken(); return; }
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      setStream("live", true);
      if (first) { first = false; loadAlerts(); }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.id) last = event.id;
          if (event.data) onEvent(event.event, JSON.parse(event.data));
        }
      }
    } catch (error) {
      console.warn("alert stream:", error);
    }
    setStream("reconnecting", false);
    await sleep(2000);
  }
}

async function loadAlerts() {
  const page = await api("/api/alerts?limit=50");
  for (const alert of page.items) addAlert(alert, false);
}

// ---- hits per rule -------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

// One line per rule over the hours of `series` (as /api/rules/hits returns it).
function drawHits(container, series) {
  const width = 640, height = 220, left = 34, right = 10, top = 10, bottom = 24;
  const rules = Object.entries(series.rules);
  const hours = rules.length ? rules[0][1].length : 24;
  const peak = Math.max(1, ...rules.flatMap(([, counts]) => counts));
  const x = (i) => left + (hours > 1 ? (i * (width - left - right)) / (hours - 1) : 0);
  const y = (v) => top + (height - top - bottom) * (1 - v / peak);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
    "aria-label": "alerts per rule per hour" });
  for (const tick of [0, Math.ceil(peak / 2), peak]) {
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), stroke: "#dde2e8" }));
    const label = svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7480" });
    label.textContent = String(tick);
    chart.append(label);
  }
  for (const [i, text] of [[0, `-${hours}h`], [hours - 1, "now"]]) {
    const label = svg("text", { x: x(i), y: height - 6, "text-anchor": i ? "end" : "start", "font-size": 11, fill: "#6b7480" });
    label.textContent = text;
    chart.append(label);
  }
  const legend = el("div", { class: "legend" });
  rules.forEach(([rule, counts], index) => {
    const colour = COLOURS[index % COLOURS.length];
    const points = counts.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, fill: "none", stroke: colour, "stroke-width": 2, "data-rule": rule }));
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour;
    legend.append(el("span", {}, swatch, `${rule} (${counts.reduce((a, b) => a + b, 0)})`));
  });
  container.replaceChildren(chart, legend);
}

async function loadHits() {
  drawHits($("hits-chart"), await api("/api/rules/hits?hours=24"));
}

// ---- stories -------------------------------------------------------------------

async function showStory(id) {
  const view = $("story-view");
  let story;
  try {
    story = await api("/api/stories/" + encodeURIComponent(id));
  } catch (error) {
    view.textContent = "Story " + id + " is not kept any more.";
    return;
  }
  const outlets = el("ol", { class: "outlets" });
  for (const [name, seen] of story.outlets) {
    const after = Math.round(seen - story.first_seen);
    outlets.append(el("li", {}, `${name} — ${when(seen)}`, after > 0 ? ` (+${after} s)` : " (first)"));
  }
  view.className = "";
  view.replaceChildren(
    el("p", {}, el("strong", {}, story.title)),
    el("p", { class: "muted" }, `first seen ${when(story.first_seen)} on ${story.first_outlet}; ` +
      `${story.outlet_count} outlet(s), ${story.items} item(s); ${story.alerts.length} alert(s)`),
    outlets);
  view.dataset.story = story.id;
}

async function loadStories() {
  const page = await api("/api/stories?limit=15");
  const list = $("story-list");
  list.replaceChildren(...page.items.map((story) => el("li", {},
    el("button", { class: "link", type: "button", onclick: () => showStory(story.id) }, story.title || story.id),
    el("span", { class: "muted" }, ` — ${story.outlet_count} outlet(s), ${when(story.first_seen)}`))));
}

// ---- feed health and readiness -------------------------------------------------

async function loadFeeds() {
  const page = await api("/api/feeds?limit=500");
  $("feed-rows").replaceChildren(...page.items.map((feed) => el("tr", {},
    el("td", { title: feed.url }, feed.feed),
    el("td", { class: "state-" + feed.state }, feed.state),
    el("td", {}, isoWhen(feed.last_success)),
    el("td", {}, feed.failures),
    el("td", {}, feed.last_error || "-"),
    el("td", {}, feed.items_per_day),
    el("td", {}, isoWhen(feed.next_poll)))));
  const broken = page.items.filter((feed) => feed.state === "failing" || feed.state === "gone").length;
  $("feeds-summary").textContent = `${page.total} feeds, ${broken} failing or gone; ${page.pollers.length} poller(s) alive`;
}

async function loadReady() {
  const badge = $("ready");
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    const body = await response.json();
    badge.textContent = body.status;
    badge.title = (body.reasons || []).join("\n");
    badge.className = "badge " + (response.ok ? "ok" : "bad");
  } catch (error) {
    badge.textContent = "unreachable";
    badge.className = "badge bad";
  }
}

function every(ms, load) {
  const run = () => load().catch((error) => console.warn(error));
  run();
  return setInterval(run, ms);
}

function start() {
  stream();
  every(60000, loadHits);
  every(15000, loadFeeds);
  every(30000, loadStories);
  every(10000, loadReady);
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token-input").value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("token-form").hidden = true;
  location.reload();
});

start();
