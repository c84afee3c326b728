// wtal annotate: the page's script (served as a file: the Content-Security-Policy forbids inline script)
"use strict";
const $ = (id) => document.getElementById(id);
const player = $("player"), svg = $("timeline");
const state = { videos: [], index: -1, video: null, clicksFile: "" };
window.wtal = state;

const token = document.querySelector('meta[name="wtal-token"]').content;

async function api(method, url, body) {
  const writes = method !== "GET";
  const response = await fetch(url, {
    method,
    headers: writes ? { "Content-Type": "application/json", "X-WTAL-Token": token } : {},
    body: writes ? JSON.stringify(body || {}) : undefined,
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function loadList(subset) {
  const data = await api("GET", "/api/videos" + (subset ? "?subset=" + encodeURIComponent(subset) : ""));
  state.clicksFile = data.clicks_file;
  if (!$("subset").options.length) {
    for (const name of data.subsets) $("subset").add(new Option(name, name));
    const wanted = data.subsets.includes("train") ? "train" : data.subsets[0];
    $("subset").value = wanted;
    return loadList(wanted);
  }
  state.videos = data.videos;
  renderList();
  if (state.videos.length) await openVideo(Math.max(0, Math.min(state.index, state.videos.length - 1)));
}

function renderList() {
  const list = $("list");
  list.replaceChildren();
  state.videos.forEach((v, i) => {
    const item = document.createElement("li");
    item.textContent = v.id + (v.clicks ? ` (${v.clicks})` : "");
    item.className = [i === state.index ? "on" : "", v.clicks ? "done" : "", v.has_video ? "" : "gone"].join(" ");
    item.onclick = () => openVideo(i);
    list.appendChild(item);
  });
  const done = state.videos.filter((v) => v.clicks).length;
  $("progress").textContent = `${done} of ${state.videos.length} clicked`;
}

async function openVideo(i) {
  state.index = i;
  const id = state.videos[i].id;
  state.video = await api("GET", "/api/video/" + encodeURIComponent(id));
  $("title").textContent = id;
  renderList();
  if (state.video.has_video) {
    player.src = "/media/" + encodeURIComponent(id);
    say(`clicks are saved to ${state.clicksFile}`);
  } else {
    player.removeAttribute("src");
    say(`no video file for ${id}: put it in the videos folder`, true);
  }
  draw();
}

function duration() {
  return player.duration || state.video?.duration || 1;
}

function x(seconds) {
  return (seconds / duration()) * svg.clientWidth;
}

function draw() {
  const v = state.video;
  const width = svg.clientWidth, ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const titled = (element, text) => {  // labels come from files strangers write: text nodes, never markup
    const title = document.createElementNS(ns, "title");
    title.textContent = text;
    element.appendChild(title);
  };
  const rect = (x0, y, w, h, fill, title) => {
    const r = document.createElementNS(ns, "rect");
    Object.entries({ x: x0, y, width: Math.max(w, 1), height: h, fill }).forEach(([k, val]) => r.setAttribute(k, val));
    if (title) titled(r, title);
    svg.appendChild(r);
    return r;
  };
  rect(0, 0, width, 150, "#f6f6f6");
  if (!v) return;
  for (const g of v.ground_truth) rect(x(g.segment[0]), 4, x(g.segment[1]) - x(g.segment[0]), 14, "#3a3", g.label);
  for (const d of v.detections || [])
    rect(x(d.segment[0]), 22, x(d.segment[1]) - x(d.segment[0]), 10, "#f80", `${d.label} ${d.score.toFixed(3)}`)
      .setAttribute("opacity", "0.6");
  const palette = ["#36c", "#939", "#0aa", "#a60"];
  $("score-legend").replaceChildren(...Object.keys(v.scores?.classes || {}).map((label, k) => {
    const entry = document.createElement("span"), swatch = document.createElement("i");
    swatch.className = "sw";
    swatch.style.background = palette[k % palette.length];
    entry.append(swatch, document.createTextNode(`score: ${label}`));
    return entry;
  }));
  Object.entries(v.scores?.classes || {}).forEach(([label, values], k) => {
    const line = document.createElementNS(ns, "polyline");
    const points = values.map((s, j) => `${x(v.scores.times[j])},${140 - 100 * s}`).join(" ");
    Object.entries({ points, fill: "none", stroke: palette[k % palette.length] }).forEach(([a, b]) => line.setAttribute(a, b));
    titled(line, label);
    svg.appendChild(line);
  });
  for (const t of v.clicks) {
    const marker = rect(x(t) - 2, 0, 5, 150, "#d22", `click at ${t.toFixed(2)} s (click to delete)`);
    marker.style.cursor = "pointer";
    marker.addEventListener("click", (event) => { event.stopPropagation(); removeClick(t); });
  }
  rect(x(player.currentTime || 0) - 0.5, 0, 1, 150, "#000");
}

function saved(data) {
  if (state.video && data.id === state.video.id) state.video.clicks = data.clicks;
  const entry = state.videos.find((v) => v.id === data.id);
  if (entry) entry.clicks = data.clicks.length;
  renderList();
  draw();
}

async function addClick() {
  if (!state.video) return;
  const seconds = player.currentTime;
  try {
    saved(await api("POST", "/api/clicks/" + encodeURIComponent(state.video.id), { seconds }));
    say(`background click at ${seconds.toFixed(2)} s saved`);
  } catch (e) { say(e.message, true); }
}

async function removeClick(seconds) {
  try {
    saved(await api("DELETE", "/api/clicks/" + encodeURIComponent(state.video.id), { seconds }));
    say(`click at ${seconds.toFixed(2)} s deleted`);
  } catch (e) { say(e.message, true); }
}

async function undo() {
  try {
    const data = await api("POST", "/api/undo");
    if (data.id === null) return say("nothing to undo");
    saved({ id: data.id, clicks: data.clicks });
    say(`undone (${data.id})`);
  } catch (e) { say(e.message, true); }
}

function step(delta) {
  const i = state.index + delta;
  if (i >= 0 && i < state.videos.length) openVideo(i);
}

$("add").onclick = addClick;
$("undo").onclick = undo;
$("prev").onclick = () => step(-1);
$("next").onclick = () => step(1);
$("subset").onchange = (e) => { state.index = 0; loadList(e.target.value); };
svg.addEventListener("click", (event) => {
  const bounds = svg.getBoundingClientRect();
  player.currentTime = ((event.clientX - bounds.left) / bounds.width) * duration();
});
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "SELECT" || event.ctrlKey && event.key !== "z" || event.metaKey || event.altKey) return;
  const actions = {
    b: addClick, u: undo, z: undo, n: () => step(1), p: () => step(-1),
    ArrowLeft: () => { player.currentTime = Math.max(0, player.currentTime - 1); },
    ArrowRight: () => { player.currentTime = Math.min(duration(), player.currentTime + 1); },
    " ": () => (player.paused ? player.play() : player.pause()),
  };
  const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!action) return;
  event.preventDefault();
  action();
});
player.addEventListener("loadedmetadata", draw);
player.addEventListener("loadstart", () => {
  if (state.video?.has_video) say("loading the video (a copy the browser can play is made once when needed)...");
});
player.addEventListener("canplay", () => {
  if ($("status").textContent.startsWith("loading")) say(`clicks are saved to ${state.clicksFile}`);
});
player.addEventListener("error", () => say("the browser cannot play this video", true));
window.addEventListener("resize", draw);
(function tick() { if (!player.paused) draw(); requestAnimationFrame(tick); })();
loadList().catch((e) => say(e.message, true));
