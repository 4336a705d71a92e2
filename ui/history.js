// The history section: recent classifications, from GET /api/v1/history.
// Self-contained: it needs only the <section id="history"> of index.html.
// It reloads on the event "deepclassify:classified", sent by app.js after
// each classification.

const PAGE_SIZE = 10;

const section = document.getElementById("history");
const list = document.getElementById("history-list");
const status = document.getElementById("history-status");
const more = document.getElementById("history-more");
let nextBefore = null;

function describe(item) {
  const when = new Date(item.created_at).toLocaleString();
  const score = `${(item.top_score * 100).toFixed(2)}%`;
  const from = item.url_host ? `${item.url_host}${item.url_path}` : item.source;
  return `${when} · ${item.top_label} (${score}) · ${from} · ` +
    `${item.image_width}×${item.image_height} · ${Math.round(item.latency_ms)} ms`;
}

async function load(before) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (before) query.set("before", before);
  status.textContent = "Loading…";
  try {
    const response = await fetch(`/api/v1/history?${query}`);
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.detail || response.statusText);
    if (!before) list.replaceChildren();
    for (const item of answer.items) {
      const entry = document.createElement("li");
      entry.textContent = describe(item);
      entry.dataset.id = item.id;
      list.append(entry);
    }
    nextBefore = answer.next_before;
    more.hidden = !nextBefore;
    status.textContent = list.children.length ? "" : "No classifications yet.";
  } catch (error) {
    status.textContent = `The history cannot be shown: ${error.message}`;
  }
}

if (section) {
  more.addEventListener("click", () => load(nextBefore));
  document.addEventListener("deepclassify:classified", () => load(null));
  load(null);
}
