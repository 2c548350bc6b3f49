// The sluice dashboard: follows /dashboard/events (Server-Sent Events: every declared metric,
// the clusters, the DNS cache, the recent slow and failed requests, the BGP sessions) and
// draws each update; where the stream is refused or breaks it polls /dashboard/data once a
// second instead, and tries the stream again later. The actions POST with the token sluice
// logged at startup (X-Sluice-Token).
"use strict";
(function () {
  const POLL_MS = 1000;
  const EVENTS_RETRY_MS = 10000; // polling meanwhile
  const EVENTS_FIRST_MS = 5000;  // a stream that sends nothing this long is given up
  const HISTORY = 300; // points kept in the charts
  const PHASES = {
    headers: "request head", pool_wait: "pool wait", connect: "connect", tls: "TLS",
    request_sent: "request sent", first_byte: "upstream first byte", body: "response body",
    other: "until it failed",
  };

  // What tests and curious operators can read: the last data and how many updates drew.
  // `transport`: "events" while updates come over the stream, "polling" otherwise.
  const state = { updates: 0, last: null, prev: null, errors: 0, transport: "connecting" };
  window.sluiceDashboard = state;
  const hist = { t: [], rps: [], eps: [], p50: [], p90: [], p99: [] };
  let charts = null;

  const $ = (id) => document.getElementById(id);
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  // --- the token --------------------------------------------------------------------------
  const tokenInput = $("token");
  const fromHash = /(?:^#|&)token=([0-9a-f]+)/.exec(location.hash);
  if (fromHash) {
    sessionStorage.setItem("sluice-token", fromHash[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
  tokenInput.value = sessionStorage.getItem("sluice-token") || "";
  tokenInput.addEventListener("change", () => sessionStorage.setItem("sluice-token", tokenInput.value.trim()));

  function message(text, ok) {
    const m = $("message");
    m.textContent = text;
    m.className = ok ? "ok" : "bad";
    m.hidden = false;
  }

  async function act(path) {
    try {
      const r = await fetch(path, { method: "POST", headers: { "X-Sluice-Token": tokenInput.value.trim() } });
      let body = await r.text();
      if ((r.headers.get("content-type") || "").startsWith("application/json")) {
        const j = JSON.parse(body);
        body = "reload " + j.result + (j.errors && j.errors.length ? ": " + j.errors.join("; ") : "") +
          (j.changes && j.changes.length ? ": " + j.changes.join("; ") : "");
      }
      message(r.status + ": " + body.trim(), r.ok);
    } catch (e) {
      message("failed: " + e, false);
    }
    poll();
  }
  $("reload").addEventListener("click", () => act("/dashboard/reload"));

  // --- metrics ----------------------------------------------------------------------------
  function index(data) {
    const fams = {};
    for (const f of data.metrics) fams[f.name] = f.samples;
    return fams;
  }
  const matches = (labels, want) => Object.entries(want).every(([k, v]) => labels[k] === v);
  function sum(fams, name, want) {
    let s = 0;
    for (const x of fams[name] || []) if (matches(x.labels, want || {})) s += x.value;
    return s;
  }
  function rate(name, want) {
    if (!state.prev) return null;
    const dt = (state.last.time_ms - state.prev.data.time_ms) / 1000;
    if (dt <= 0) return null;
    return Math.max(0, (sum(state.fams, name, want) - sum(state.prev.fams, name, want)) / dt);
  }
  // The histogram's buckets summed over the samples matching `want`: [[le, cumulative]].
  function buckets(fams, name, want) {
    let out = null;
    for (const x of fams[name] || []) {
      if (!matches(x.labels, want || {})) continue;
      if (!out) out = x.buckets.map((b) => [b[0], 0]);
      x.buckets.forEach((b, i) => (out[i][1] += b[1]));
    }
    return out;
  }
  // The q-quantile (seconds) of what the histogram saw since the previous update (or ever).
  function quantile(name, want, q, sinceStart) {
    const cur = buckets(state.fams, name, want);
    if (!cur) return null;
    const old = !sinceStart && state.prev ? buckets(state.prev.fams, name, want) : null;
    const b = cur.map((x, i) => [x[0], x[1] - (old ? old[i][1] : 0)]);
    const total = b[b.length - 1][1];
    if (total <= 0) return null;
    const rank = q * total;
    let lower = 0, below = 0;
    for (const [le, cum] of b) {
      if (cum >= rank) {
        if (le === null) return lower; // past the last bound: say the last bound
        const inBucket = cum - below;
        return lower + (le - lower) * (inBucket > 0 ? (rank - below) / inBucket : 1);
      }
      if (le !== null) lower = le;
      below = cum;
    }
    return lower;
  }
  const fmtRate = (v) => (v === null ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(1));
  const fmtMs = (s) => (s === null ? "–" : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms");
  const fmtUs = (us) => (us >= 1000 ? (us / 1000).toFixed(1) + " ms" : us + " µs");

  // --- sections ---------------------------------------------------------------------------
  function card(key, label, value, cls) {
    return h("div", { class: "card", "data-card": key },
      h("div", { class: "value " + (cls || "") }, value), h("div", { class: "label" }, label));
  }

  function drawOverview(data) {
    const f = state.fams;
    let usable = 0, endpoints = 0;
    for (const c of data.clusters) for (const e of c.endpoints) if (!e.removed) { endpoints++; if (e.usable) usable++; }
    const busy = (f["sluice_worker_busy_seconds_total"] || []).map((x) => rate("sluice_worker_busy_seconds_total", x.labels));
    const busiest = busy.length && busy[0] !== null ? Math.max(...busy) * 100 : null;
    const eps = rate("sluice_http_responses_total", { class: "5xx" });
    $("overview").replaceChildren(
      card("rps", "requests/s", fmtRate(rate("sluice_http_requests_total"))),
      card("eps", "5xx/s", fmtRate(eps), eps ? "bad" : ""),
      card("p50", "p50 latency", fmtMs(quantile("sluice_http_request_duration_seconds", {}, 0.5))),
      card("p99", "p99 latency", fmtMs(quantile("sluice_http_request_duration_seconds", {}, 0.99))),
      card("connections", "open connections", sum(f, "sluice_listener_connections_active")),
      card("endpoints", "usable endpoints", usable + " / " + endpoints, usable < endpoints ? "bad" : ""),
      card("busy", "busiest worker", busiest === null ? "–" : busiest.toFixed(1) + " %"));
  }

  function drawListeners(data) {
    const f = state.fams;
    const head = h("tr", {}, ["listener / route", "protocol", "requests", "req/s", "2xx", "3xx", "4xx", "5xx", "5xx/s", "p99", "open conns"]
      .map((t, i) => h("th", { class: i > 1 ? "num" : "" }, t)));
    const rows = [head];
    for (const l of data.listeners) {
      const want = { listener: l.name };
      const http = l.protocol === "http";
      const cls = (c) => (http ? sum(f, "sluice_http_responses_total", { listener: l.name, class: c }) : "");
      rows.push(h("tr", { "data-listener": l.name },
        h("td", {}, h("b", {}, l.name), " ", h("span", { class: "muted" }, l.address)),
        h("td", {}, l.protocol),
        h("td", { class: "num", "data-field": "requests" },
          http ? sum(f, "sluice_http_requests_total", want) : sum(f, "sluice_listener_connections_accepted_total", want)),
        h("td", { class: "num", "data-field": "rate" },
          fmtRate(rate(http ? "sluice_http_requests_total" : "sluice_listener_connections_accepted_total", want))),
        ["2xx", "3xx", "4xx", "5xx"].map((c) => h("td", { class: "num", "data-field": c }, cls(c))),
        h("td", { class: "num" }, http ? fmtRate(rate("sluice_http_responses_total", { listener: l.name, class: "5xx" })) : ""),
        h("td", { class: "num" }, http ? fmtMs(quantile("sluice_http_request_duration_seconds", want, 0.99, !state.prev)) : ""),
        h("td", { class: "num", "data-field": "connections" }, l.active_connections)));
      if (!http) continue;
      const routes = new Set((f["sluice_route_responses_total"] || []).filter((x) => x.labels.listener === l.name).map((x) => x.labels.route));
      for (const r of routes) {
        const rw = { listener: l.name, route: r };
        const rc = (c) => sum(f, "sluice_route_responses_total", { ...rw, class: c });
        const total = ["1xx", "2xx", "3xx", "4xx", "5xx"].reduce((a, c) => a + rc(c), 0);
        rows.push(h("tr", { "data-route": r, "data-of": l.name },
          h("td", {}, "↳ ", r), h("td", {}, ""),
          h("td", { class: "num" }, total), h("td", { class: "num" }, fmtRate(rate("sluice_route_responses_total", rw))),
          ["2xx", "3xx", "4xx", "5xx"].map((c) => h("td", { class: "num" }, rc(c))),
          h("td", { class: "num" }, fmtRate(rate("sluice_route_responses_total", { ...rw, class: "5xx" }))),
          h("td", { class: "num" }, fmtMs(quantile("sluice_route_request_duration_seconds", rw, 0.99, !state.prev))),
          h("td", {}, "")));
      }
    }
    $("listeners").replaceChildren(...rows);
  }

  function endpointState(e) {
    if (e.removed) return ["removed", "warn"];
    if (e.draining) return ["draining", "warn"];
    if (e.health_check_failed) return ["failing health check", "bad"];
    if (e.ejected) return ["ejected", "bad"];
    return ["healthy", "ok"];
  }

  function drawClusters(data) {
    const out = [];
    for (const c of data.clusters) {
      const head = h("tr", {}, ["endpoint", "state", "cause", "weight", "active", "pool conns (busy/idle)", "connects", "failed connects", "ejections", ""]
        .map((t, i) => h("th", { class: i >= 3 && i <= 8 ? "num" : "" }, t)));
      const rows = c.endpoints.map((e) => {
        const [text, cls] = endpointState(e);
        const p = e.pool || {};
        const path = "?cluster=" + encodeURIComponent(c.name) + "&endpoint=" + encodeURIComponent(e.address);
        return h("tr", { "data-endpoint": e.address },
          h("td", {}, e.address),
          h("td", { "data-field": "state" }, h("span", { class: "badge " + cls }, text)),
          h("td", { class: "cause", "data-field": "cause" }, e.usable ? "" : (e.last_check || (e.ejected ? "outlier detection" : e.draining ? "drained by an operator" : ""))),
          h("td", { class: "num" }, e.weight),
          h("td", { class: "num" }, e.active_requests),
          h("td", { class: "num" }, (p.busy || 0) + " / " + (p.idle || 0)),
          h("td", { class: "num" }, p.connects || 0),
          h("td", { class: "num" }, p.connect_failures || 0),
          h("td", { class: "num" }, e.ejections),
          h("td", {}, e.draining
            ? h("button", { type: "button", "data-action": "undrain", onclick: () => act("/dashboard/undrain" + path) }, "Undrain")
            : h("button", { type: "button", "data-action": "drain", onclick: () => act("/dashboard/drain" + path) }, "Drain")));
      });
      out.push(h("div", { class: "cluster", "data-cluster": c.name },
        h("h3", {}, c.name, " ", h("span", { class: "muted" }, c.type + " · " + c.lb_policy + " · " + c.protocol),
          c.panic ? h("span", { class: "badge bad" }, "panic") : null),
        h("div", { class: "scroll" }, h("table", {}, head, rows))));
    }
    $("clusters").replaceChildren(...(out.length ? out : [h("div", { class: "empty" }, "no clusters")]));
  }

  // The phases of a request, in order: [[phase, microseconds]].
  function phases(t) {
    const out = [];
    let at = 0;
    const seg = (name, us) => { if (us > 0) { out.push([name, us]); at += us; } };
    if (t.downstream_headers >= 0) seg("headers", t.downstream_headers);
    if (t.pool_wait >= 0) seg("pool_wait", t.pool_wait);
    if (t.upstream_connect >= 0) seg("connect", t.upstream_connect);
    if (t.upstream_tls >= 0) seg("tls", t.upstream_tls);
    if (t.request_sent >= 0) seg("request_sent", t.request_sent - at);
    if (t.upstream_first_byte >= 0) {
      seg("first_byte", t.upstream_first_byte - at);
      seg("body", t.response_done - at);
    } else {
      seg("other", t.response_done - at);
    }
    return out;
  }

  function drawRequests(id, kind, list) {
    const legend = h("div", { class: "legend" }, Object.entries(PHASES).map(([k, v]) =>
      h("span", {}, h("i", { class: "phase-" + k }), v)));
    if (!list.length) {
      $(id).replaceChildren(h("div", { class: "empty" }, kind === "slow" ? "no requests in the last minute" : "no failed requests"));
      return;
    }
    const max = Math.max(...list.map((r) => (r.record.timings_us || {}).response_done || r.duration_us), 1);
    const rows = list.map((r) => {
      const rec = r.record;
      const t = rec.timings_us || {};
      const ps = phases(t);
      let dominant = null;
      for (const p of ps) if (!dominant || p[1] > dominant[1]) dominant = p;
      const total = t.response_done || r.duration_us;
      const bar = h("div", { class: "bar", title: ps.map(([p, us]) => PHASES[p] + " " + fmtUs(us)).join(", ") },
        ps.map(([p, us]) => h("span", { class: "phase-" + p, "data-phase": p, style: "width:" + (100 * us / max).toFixed(3) + "%" })));
      const tcp = rec.upstream_tcp ? "rtt " + fmtUs(rec.upstream_tcp.rtt_us) + ", " + rec.upstream_tcp.retransmits + " retransmits" : null;
      const meta = [rec.status ? "status " + rec.status : "no response", (rec.flags || []).join(", ") || null,
        rec.endpoint ? "upstream " + (rec.upstream_address || rec.endpoint) : null, tcp,
        rec.detail || null, r.listener + " · worker " + r.worker, new Date(r.ended_ms).toLocaleTimeString()].filter(Boolean);
      return h("div", { class: "row", "data-kind": kind, "data-target": rec.target, "data-dominant": dominant ? dominant[0] : "", "data-status": rec.status,
        tabindex: 0, role: "button",
        onclick: () => { $("record-text").textContent = JSON.stringify(rec, null, 2); $("record").showModal(); } },
        h("div", { class: "what" }, h("b", {}, fmtUs(total)), " ", rec.method || "", " ", rec.host || "", rec.target || ""),
        bar, h("div", { class: "meta" }, meta.join(" · ")));
    });
    $(id).replaceChildren(legend, ...rows);
  }

  function drawDns(data) {
    const head = h("tr", {}, ["name", "answer", "record TTL", "left", "state"].map((t, i) => h("th", { class: i === 2 || i === 3 ? "num" : "" }, t)));
    const rows = data.dns.map((d) => {
      const answer = d.srv ? d.srv.map((s) => s.target + ":" + s.port).join(", ") : d.addresses.join(", ");
      const st = d.error !== "ok" && !d.stale && !d.refresh_failed ? [d.error + (d.error_text ? ": " + d.error_text : ""), "bad"]
        : d.stale ? ["stale", "warn"] : d.refresh_failed ? ["refresh failed", "warn"] : d.expired ? ["expired", "warn"] : ["fresh", "ok"];
      return h("tr", { "data-name": d.name },
        h("td", {}, d.name), h("td", {}, answer || "–"), h("td", { class: "num" }, d.record_ttl + " s"),
        h("td", { class: "num" }, Math.max(0, d.left_seconds).toFixed(0) + " s"),
        h("td", {}, h("span", { class: "badge " + st[1] }, st[0])));
    });
    $("dns").replaceChildren(head, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "empty" }, "no names resolved"))]));
  }

  function drawWorkers() {
    const f = state.fams;
    const head = h("tr", {}, ["worker", "busy", "events/s", "longest iteration"].map((t, i) => h("th", { class: i ? "num" : "" }, t)));
    const rows = (f["sluice_worker_busy_seconds_total"] || []).map((x) => {
      const w = { worker: x.labels.worker };
      const busy = rate("sluice_worker_busy_seconds_total", w);
      return h("tr", { "data-worker": w.worker }, h("td", {}, w.worker),
        h("td", { class: "num" }, busy === null ? "–" : (busy * 100).toFixed(1) + " %"),
        h("td", { class: "num" }, fmtRate(rate("sluice_worker_events_total", w))),
        h("td", { class: "num" }, fmtMs(sum(f, "sluice_worker_longest_iteration_seconds", w))));
    });
    $("workers").replaceChildren(head, ...rows);
  }

  function fmtAge(s) {
    if (!(s > 0)) return "–";
    const d = Math.floor(s / 86400), hh = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d ? d + "d " + hh + "h" : hh ? hh + "h " + m + "m" : m ? m + "m " + Math.floor(s % 60) + "s" : Math.floor(s) + "s";
  }
  function drawBgp(data) {
    const b = data.bgp;
    $("bgp-section").hidden = !b;
    if (!b) return;
    $("bgp-speaker").textContent = "AS " + b.local_as + " · router id " + b.router_id;
    const phead = h("tr", {}, ["peer", "AS", "state", "uptime", "updates sent", "updates received", "last error"]
      .map((t, i) => h("th", { class: i === 3 || i === 4 || i === 5 ? "num" : "" }, t)));
    const peers = b.peers.map((p) => h("tr", { "data-peer": p.address },
      h("td", {}, p.address), h("td", {}, p.remote_as),
      h("td", { "data-field": "state" }, h("span", { class: "badge " + (p.state === "established" ? "ok" : "bad") }, p.state)),
      h("td", { class: "num", "data-field": "uptime" }, p.state === "established" ? fmtAge(p.uptime_seconds) : "–"),
      h("td", { class: "num", "data-field": "updates_sent" }, p.updates_sent),
      h("td", { class: "num" }, p.updates_received),
      h("td", { class: "cause", "data-field": "last_error" }, p.last_error || "")));
    $("bgp-peers").replaceChildren(phead, ...(peers.length ? peers : [h("tr", {}, h("td", { colspan: 7, class: "empty" }, "no peers"))]));
    const xhead = h("tr", {}, ["prefix", "announced", "reason", "when", "usable", "transitions"]
      .map((t, i) => h("th", { class: i >= 4 ? "num" : "" }, t)));
    const prefixes = b.prefixes.map((x) => h("tr", { "data-prefix": x.prefix },
      h("td", {}, x.prefix),
      h("td", { "data-field": "announced" }, h("span", { class: "badge " + (x.announced ? "ok" : "warn") },
        x.announced ? (x.graceful_shutdown ? "announced (graceful shutdown)" : "announced") : "not announced")),
      h("td", { class: x.announced ? "" : "cause", "data-field": "reason" }, x.reason),
      h("td", {}, x.source + " ≥ " + x.min_healthy),
      h("td", { class: "num" }, x.usable + " / " + x.total),
      h("td", { class: "num" }, x.transitions)));
    $("bgp-prefixes").replaceChildren(xhead, ...(prefixes.length ? prefixes : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, "no prefixes"))]));
  }

  // --- charts -----------------------------------------------------------------------------
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function makeChart(el, series) {
    const fg = css("--fg"), line = css("--line");
    const axis = { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line } };
    return new uPlot({
      width: Math.max(200, el.clientWidth), height: 180,
      // Until there are two points, the last minute (uPlot would otherwise span years).
      scales: { x: { time: true, range: (u, min, max) => {
        const now = Date.now() / 1000;
        return min === null || max === null || min === max ? [(max ?? now) - 60, max ?? now] : [min, max];
      } } },
      axes: [axis, { ...axis, size: 50 }],
      series: [{}, ...series.map(([label, color]) => ({ label, stroke: css(color), width: 2, spanGaps: false }))],
    }, [[]].concat(series.map(() => [])), el);
  }
  function drawCharts() {
    if (typeof uPlot === "undefined") return;
    if (!charts) {
      charts = {
        rate: makeChart($("chart-rate"), [["req/s", "--accent"], ["5xx/s", "--bad"]]),
        latency: makeChart($("chart-latency"), [["p50", "--ok"], ["p90", "--warn"], ["p99", "--bad"]]),
      };
      window.addEventListener("resize", () => {
        charts.rate.setSize({ width: Math.max(200, $("chart-rate").clientWidth), height: 180 });
        charts.latency.setSize({ width: Math.max(200, $("chart-latency").clientWidth), height: 180 });
      });
    }
    // One point alone would make uPlot span years: nothing until there are two.
    const h = hist.t.length < 2 ? { t: [], rps: [], eps: [], p50: [], p90: [], p99: [] } : hist;
    charts.rate.setData([h.t, h.rps, h.eps]);
    charts.latency.setData([h.t, h.p50, h.p90, h.p99]);
  }
  function record() {
    const ms = (s) => (s === null ? null : s * 1000);
    const q = (x) => ms(quantile("sluice_http_request_duration_seconds", {}, x));
    hist.t.push(state.last.time_ms / 1000);
    hist.rps.push(rate("sluice_http_requests_total"));
    hist.eps.push(rate("sluice_http_responses_total", { class: "5xx" }));
    hist.p50.push(q(0.5)); hist.p90.push(q(0.9)); hist.p99.push(q(0.99));
    for (const k of Object.keys(hist)) if (hist[k].length > HISTORY) hist[k].shift();
  }

  // --- the loop ---------------------------------------------------------------------------
  function draw(data) {
    const st = $("state");
    st.textContent = data.state;
    st.className = "badge " + (data.state === "ready" ? "ok" : "warn");
    $("generation").textContent = "config generation " + data.generation;
    $("updated").textContent = "updated " + new Date(data.time_ms).toLocaleTimeString();
    drawOverview(data);
    drawListeners(data);
    drawClusters(data);
    drawRequests("slow", "slow", data.slow);
    drawRequests("failed", "failed", data.failed);
    drawDns(data);
    drawBgp(data);
    drawWorkers();
    if (state.prev) record();
    drawCharts();
  }

  function accept(data) {
    if (state.last) state.prev = { data: state.last, fams: state.fams };
    state.last = data;
    state.fams = index(data);
    draw(data);
    state.updates++;
  }
  function setTransport(t) {
    state.transport = t;
    const el = $("transport");
    el.textContent = t;
    el.className = "badge " + (t === "events" ? "ok" : "warn");
  }

  // Polling: while the event stream is refused or broken.
  let timer = null;
  let inFlight = false;
  let polling = false;
  async function poll() {
    if (inFlight) return;
    clearTimeout(timer);
    inFlight = true;
    try {
      const r = await fetch("/dashboard/data", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      accept(await r.json());
    } catch (e) {
      state.errors++;
      const st = $("state");
      st.textContent = "unreachable";
      st.className = "badge bad";
    } finally {
      inFlight = false;
      if (polling) timer = setTimeout(poll, document.hidden ? 5 * POLL_MS : POLL_MS);
    }
  }

  // The event stream: one update per interval, pushed by sluice.
  let events = null;
  function fallBack() {
    if (events) { events.close(); events = null; }
    pollOnly();
    setTimeout(follow, EVENTS_RETRY_MS);
  }
  function pollOnly() {
    setTransport("polling");
    if (!polling) { polling = true; poll(); }
  }
  function follow() {
    if (events) return;
    // A hidden tab polls every 5 s rather than taking every update.
    if (!window.EventSource || document.hidden) return pollOnly();
    const es = new EventSource("/dashboard/events");
    events = es;
    let first = true;
    const silent = setTimeout(() => { if (first && events === es) fallBack(); }, EVENTS_FIRST_MS);
    es.onmessage = (ev) => {
      if (events !== es) return;
      if (first) {
        first = false;
        clearTimeout(silent);
        polling = false;
        clearTimeout(timer);
        setTransport("events");
      }
      accept(JSON.parse(ev.data));
    };
    // sluice ends the stream when it drains or hands over to a new binary; a refusal (503:
    // too many streams, draining) or a broken connection is an error.
    es.addEventListener("end", () => { if (events === es) fallBack(); });
    es.onerror = () => { if (events === es) { clearTimeout(silent); fallBack(); } };
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) return follow();
    if (events) { events.close(); events = null; }
    pollOnly();
  });
  follow();
})();
