"use strict";
// Charts of the file server over the Locust run, drawn as plain SVG by this script: no
// library and nothing fetched from elsewhere, so the page works offline.  It polls
// ./data?after=N (server_history.py) for the samples it has not seen and redraws.
(function () {
  const W = 460, H = 170;
  const PAD = {left: 44, right: 10, top: 8, bottom: 20};
  const PLOT_W = W - PAD.left - PAD.right, PLOT_H = H - PAD.top - PAD.bottom;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                  "#17becf"];
  const LEGEND_MAX = 8;          // more series than this: the legend gives a count
  const READOUT_MAX = 6;         // per-worker readout: the busiest few

  const CHARTS = [
    {id: "rps", title: "Requests/s (between polls)", digits: 1, series: () => [
      {key: "rps", name: "requests/s", color: COLORS[0], value: s => s.rps},
      {key: "eps", name: "errors/s", color: COLORS[1], value: s => s.eps}]},
    {id: "busy", title: "Busy workers", digits: 0, integer: true, series: () => [
      {key: "busy", name: "busy workers", color: COLORS[3], value: s => s.busy},
      {key: "open", name: "open connections", color: COLORS[4], value: s => s.open},
      {key: "pool", name: "pool size", color: "#888", dashed: true, value: s => s.pool}]},
    {id: "cpu", title: "Server CPU % (100 = one core)", digits: 1, series: () => [
      {key: "cpu", name: "CPU %, all processes", color: COLORS[2], value: s => s.cpu}]},
    {id: "memory", title: "Memory MB", digits: 1, series: () => [
      {key: "rss", name: "RSS total", color: COLORS[5], value: s => s.rss_mb},
      {key: "pss", name: "PSS total", color: COLORS[6], dashed: true, value: s => s.pss_mb}]},
    {id: "workers", title: "CPU % per worker", digits: 1, perWorker: true, series: workerSeries},
  ];

  const state = {samples: [], markers: [], count: 0, interval: 2, capacity: 600};
  const views = {};              // chart id -> {svg, plot, cursor, now, legend, readout, geom}

  function workerSeries() {
    const names = new Set();
    for (const s of state.samples) for (const name of Object.keys(s.workers || {})) names.add(name);
    const sorted = [...names].sort((a, b) => a.localeCompare(b, undefined, {numeric: true}));
    return sorted.map((name, i) => ({
      key: name, name: name,
      color: i < COLORS.length ? COLORS[i] : `hsl(${(i * 137.508) % 360} 60% 45%)`,
      value: s => (s.workers && s.workers[name] != null ? s.workers[name] : null),
    }));
  }

  function scale(max, integer) {
    if (!(max > 0)) max = 1;
    const rough = max / 4, power = Math.pow(10, Math.floor(Math.log10(rough)));
    const f = rough / power;
    let step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
    if (integer) step = Math.max(1, Math.round(step));
    return {step, top: Math.ceil(max / step) * step};
  }

  function fmt(v, digits) {
    return v == null ? "–" : Number(v).toLocaleString(undefined,
      {maximumFractionDigits: digits, minimumFractionDigits: 0});
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString([], {hour12: false});
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text != null) node.textContent = text;
    return node;
  }

  function build(chart) {
    const box = document.createElement("div");
    box.className = "chart";
    box.id = "chart-" + chart.id;
    box.innerHTML = `<h2><span></span><span class="now"></span></h2>`;
    box.querySelector("h2 span").textContent = chart.title;
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": chart.title,
                           "data-chart": chart.id, "data-samples": "0"});
    const plot = el("g", {});
    const cursor = el("line", {class: "cursor", y1: PAD.top, y2: PAD.top + PLOT_H,
                               visibility: "hidden"});
    svg.append(plot, cursor);
    const legend = document.createElement("div");
    legend.className = "legend";
    const readout = document.createElement("div");
    readout.className = "readout";
    box.append(svg, legend, readout);
    document.getElementById("charts").append(box);
    const view = {svg, plot, cursor, legend, readout, now: box.querySelector(".now"), geom: null};
    svg.addEventListener("mousemove", event => hover(chart, view, event));
    svg.addEventListener("mouseleave", () => {
      view.cursor.setAttribute("visibility", "hidden");
      view.readout.textContent = "";
    });
    views[chart.id] = view;
  }

  function draw(chart) {
    const view = views[chart.id], samples = state.samples, series = chart.series();
    view.plot.replaceChildren();
    view.svg.setAttribute("data-samples", String(samples.length));
    if (!samples.length) {
      view.plot.append(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no samples yet"));
      view.geom = null;
      return;
    }
    const t0 = samples[0].t, t1 = samples[samples.length - 1].t;
    const span = Math.max(t1 - t0, state.interval);
    let max = 0;
    for (const s of series) {
      for (const sample of samples) {
        const v = s.value(sample);
        if (v != null && v > max) max = v;
      }
    }
    const {step, top} = scale(max, chart.integer);
    const x = t => PAD.left + (t - t0) / span * PLOT_W;
    const y = v => PAD.top + PLOT_H - v / top * PLOT_H;
    view.geom = {t0, span, x, series};

    for (let v = 0; v <= top + step / 2; v += step) {
      view.plot.append(el("line", {class: "grid", x1: PAD.left, x2: PAD.left + PLOT_W,
                                   y1: y(v), y2: y(v)}));
      view.plot.append(el("text", {x: PAD.left - 4, y: y(v) + 3, "text-anchor": "end"},
                          fmt(v, 2)));
    }
    for (let i = 0; i <= 3; i++) {
      const t = t0 + span * i / 3;
      const anchor = i === 0 ? "start" : i === 3 ? "end" : "middle";
      view.plot.append(el("text", {x: x(t), y: H - 5, "text-anchor": anchor}, clock(t)));
    }
    for (const m of state.markers) {
      if (m.t < t0 || m.t > t0 + span) continue;
      view.plot.append(el("line", {class: "marker", x1: x(m.t), x2: x(m.t), y1: PAD.top,
                                   y2: PAD.top + PLOT_H}));
      view.plot.append(el("text", {x: x(m.t) + 3, y: PAD.top + 9}, m.label));
    }
    const gap = 2.5 * state.interval;
    for (const s of series) {
      let d = "", points = 0, previous = null;
      for (const sample of samples) {
        const v = s.value(sample);
        if (v == null) { previous = null; continue; }
        const penUp = previous === null || sample.t - previous > gap;
        d += `${penUp ? "M" : "L"}${x(sample.t).toFixed(1)},${y(v).toFixed(1)}`;
        previous = sample.t;
        points++;
      }
      if (!points) continue;
      const attrs = {class: "series", d, stroke: s.color, "data-series": s.key,
                     "data-points": String(points)};
      if (s.dashed) attrs["stroke-dasharray"] = "5 3";
      view.plot.append(el("path", attrs));
    }
    const last = samples[samples.length - 1];
    view.now.textContent = nowText(chart, series, last);
    legend(view, series);
  }

  function nowText(chart, series, last) {
    if (chart.perWorker) {
      const values = series.map(s => s.value(last)).filter(v => v != null);
      if (!values.length) return "";
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      return `max ${fmt(Math.max(...values), 1)} · mean ${fmt(mean, 1)}`;
    }
    return `${series[0].name} ${fmt(series[0].value(last), chart.digits)}`;
  }

  function legend(view, series) {
    if (series.length > LEGEND_MAX) {
      view.legend.textContent = `${series.length} workers (hover for the busiest)`;
      return;
    }
    view.legend.replaceChildren(...series.map(s => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      item.append(swatch, s.name);
      return item;
    }));
  }

  function hover(chart, view, event) {
    const g = view.geom, samples = state.samples;
    if (!g || !samples.length) return;
    const box = view.svg.getBoundingClientRect();
    const px = (event.clientX - box.left) / box.width * W;
    const t = g.t0 + (px - PAD.left) / PLOT_W * g.span;
    let best = samples[0];
    for (const s of samples) if (Math.abs(s.t - t) < Math.abs(best.t - t)) best = s;
    view.cursor.setAttribute("x1", g.x(best.t));
    view.cursor.setAttribute("x2", g.x(best.t));
    view.cursor.setAttribute("visibility", "visible");
    let parts = g.series.map(s => [s.name, s.value(best)]).filter(([, v]) => v != null);
    if (chart.perWorker) parts = parts.sort((a, b) => b[1] - a[1]).slice(0, READOUT_MAX);
    view.readout.textContent = clock(best.t) + "  " +
      parts.map(([name, v]) => `${name} ${fmt(v, chart.digits)}`).join(" · ");
  }

  function describeServer(server) {
    if (!server || !server.mode) return "waiting for the first poll";
    let text = `${server.mode} pool of ${server.pool}`;
    const i = server.interpreter;
    if (i) {
      text += ` · ${i.implementation} ${i.version}`;
      text += i.free_threaded ? `, free-threaded, GIL ${i.gil_enabled ? "enabled" : "disabled"}`
                              : ", with the GIL";
    }
    return text + (server.address ? ` · ${server.address}` : "");
  }

  // In the Locust UI's frame: as tall as the charts, and in the UI's light or dark theme.
  function fitFrame() {
    try {
      const frame = window.frameElement;
      if (!frame) return;
      frame.style.height = Math.ceil(document.body.getBoundingClientRect().height) + "px";
      const rgba = getComputedStyle(window.parent.document.body).backgroundColor.match(/[\d.]+/g);
      if (rgba && rgba.length >= 3 && rgba[3] !== "0") {
        const dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 128;
        document.documentElement.classList.toggle("dark", dark);
        document.documentElement.classList.toggle("light", !dark);
      }
    } catch (e) { /* another origin embeds us: it sizes the frame itself */ }
  }

  function show(status) {
    document.getElementById("status").textContent = status;
    document.getElementById("sampling").textContent =
      `a sample every ${state.interval} s, the last ${state.capacity} kept`;
    for (const chart of CHARTS) draw(chart);
    fitFrame();
  }

  async function poll() {
    let status = "";
    try {
      const response = await fetch(`data?after=${state.count}`, {cache: "no-store"});
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
      if (data.count < state.count) state.samples = [];      // the master restarted
      state.interval = data.interval_seconds;
      state.capacity = data.capacity;
      state.count = data.count;
      state.markers = data.markers;
      state.samples = state.samples.concat(data.samples).slice(-state.capacity);
      document.getElementById("server").textContent = describeServer(data.server);
      status = data.error || "";
    } catch (error) {
      status = `cannot read the history from the Locust master: ${error.message}`;
    }
    show(status);
    setTimeout(poll, state.interval * 1000);
  }

  for (const chart of CHARTS) build(chart);
  window.addEventListener("resize", fitFrame);
  if (window.top !== window.self) document.getElementById("open-alone").hidden = false;
  poll();
})();
