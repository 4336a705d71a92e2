// DeepClassify's page: three views (home, by link, by upload) over one API.
//
// The gateway serves this same page at /, /url and /upload; the path picks
// the view and links switch views without reloading. A photo can come from
// the file picker, a drop anywhere on the page or a paste; a link from the
// URL field. Both end in the same stage: the image, a progress indicator
// while the API works, then the five classes as bars.

import { ApiError, classifyFile, classifyUrl, getModel } from "./api.js";
import { prepareUpload } from "./images.js";
import { addRecent, clearRecent, loadRecent } from "./recent.js";

const VIEWS = { "/": "home", "/url": "url", "/upload": "upload" };
const TITLES = {
  home: "DeepClassify",
  url: "Classify by link · DeepClassify",
  upload: "Classify by upload · DeepClassify",
};

const byId = (id) => document.getElementById(id);

let currentView = "home";
// Bumped by every new request and view change; older answers are dropped.
let serial = 0;
let previewUrl = null;

// Percentages have at least MIN_DECIMALS decimals, and more (up to
// MAX_DECIMALS) when that is what tells apart classes whose probabilities
// differ: a model with random weights gives every class about 0.1%.
const MIN_DECIMALS = 2;
const MAX_DECIMALS = 5;

function percent(probability, decimals = MIN_DECIMALS) {
  return `${(probability * 100).toFixed(decimals)}%`;
}

/** The fewest decimals that show a difference between neighbouring classes. */
function decimalsFor(predictions) {
  const values = predictions.map((prediction) => prediction.probability);
  for (let decimals = MIN_DECIMALS; decimals < MAX_DECIMALS; decimals += 1) {
    const apart = values.every(
      (value, index) =>
        index === 0 ||
        value === values[index - 1] ||
        percent(value, decimals) !== percent(values[index - 1], decimals),
    );
    if (apart) return decimals;
  }
  return MAX_DECIMALS;
}

function size(dimensions) {
  return `${dimensions.width} × ${dimensions.height}`;
}

// ---- Views -------------------------------------------------------------

function showView(path, { focus = false } = {}) {
  currentView = VIEWS[path] || "home";
  serial += 1;

  for (const section of document.querySelectorAll("[data-view]")) {
    section.hidden = section.dataset.view !== currentView;
  }
  for (const link of document.querySelectorAll("nav [data-nav]")) {
    const current = VIEWS[link.getAttribute("href")] === currentView;
    link.toggleAttribute("aria-current", current);
    if (current) link.setAttribute("aria-current", "page");
  }
  document.title = TITLES[currentView];
  setBusy(false);
  hideStage();
  clearError("url");
  clearError("upload");

  if (focus && currentView === "url") byId("url-input").focus();
  else if (focus) byId("main").focus();
}

function navigate(path, options) {
  if (location.pathname !== path) history.pushState(null, "", path);
  showView(path, options);
}

// ---- Stage: preview, progress, result ----------------------------------

function setBusy(busy) {
  byId("progress").hidden = !busy;
  byId("url-form").querySelector("button").disabled = busy;
  byId("file-input").disabled = busy;
  byId("stage").setAttribute("aria-busy", String(busy));
}

function hideStage() {
  byId("stage").hidden = true;
  byId("result").hidden = true;
  byId("stage-hint").hidden = true;
}

function showPreview(source, caption, hint = "", { thumbnail = false } = {}) {
  const image = byId("stage-image");
  byId("stage-figure").classList.remove("broken");
  image.classList.toggle("thumbnail", thumbnail);
  image.src = source;
  image.alt = caption ? `Preview: ${caption}` : "Preview of the image";
  byId("stage-caption").textContent = caption;
  byId("stage-hint").textContent = hint;
  byId("stage-hint").hidden = !hint;
  byId("result").hidden = true;
  byId("stage").hidden = false;
}

function showResult(entry) {
  const list = byId("predictions");
  const top = entry.predictions[0]?.probability || 1;
  const decimals = decimalsFor(entry.predictions);
  list.replaceChildren(
    ...entry.predictions.map((prediction, index) => {
      const item = document.createElement("li");
      item.className = index === 0 ? "prediction top" : "prediction";
      const line = document.createElement("div");
      line.className = "line";
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = prediction.label;
      const value = document.createElement("span");
      value.className = "pct";
      value.textContent = percent(prediction.probability, decimals);
      line.append(label, value);
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.style.width = `${Math.max(1, (prediction.probability / top) * 100)}%`;
      bar.append(fill);
      item.append(line, bar);
      return item;
    }),
  );

  const inference = entry.timing?.inference;
  byId("result-time").textContent =
    `${Math.round(entry.ms)} ms` +
    (inference === undefined ? "" : ` (the model: ${Math.round(inference)} ms)`);
  byId("result-model").textContent =
    `${entry.model.name}, version ${entry.model.version}, ` +
    `${entry.model.weights} weights`;
  const image = entry.image;
  byId("result-image").textContent =
    `${size(image)} ${image.format}` +
    (entry.original && entry.scaled
      ? `, scaled down from ${size(entry.original)} in this browser`
      : "");

  byId("stage-hint").hidden = true;
  byId("result").hidden = false;
  byId("stage").hidden = false;
}

function showError(view, message) {
  const element = byId(`${view}-error`);
  element.textContent = message;
  element.hidden = false;
}

function clearError(view) {
  byId(`${view}-error`).hidden = true;
  byId(`${view}-error`).textContent = "";
}

/**
 * Runs one classification: progress, then the result or the error in words.
 *
 * `task` returns {answer, entry}: the API's answer and what the recent list
 * keeps besides it.
 */
async function run(view, task) {
  const mine = (serial += 1);
  clearError(view);
  setBusy(true);
  byId("result").hidden = true;
  byId("stage-hint").hidden = true;
  const started = performance.now();

  try {
    const { answer, entry } = await task();
    if (mine !== serial) return;
    Object.assign(entry, {
      at: Date.now(),
      ms: performance.now() - started,
      predictions: answer.predictions.map(({ label, probability }) => ({
        label,
        probability,
      })),
      model: answer.model,
      image: answer.image,
      timing: answer.timing_ms,
    });
    showResult(entry);
    renderRecent(addRecent(entry));
    // The server-side history (history.js) reloads on this.
    document.dispatchEvent(new CustomEvent("deepclassify:classified"));
  } catch (failure) {
    if (mine !== serial) return;
    showError(
      view,
      failure instanceof ApiError
        ? failure.message
        : `The page could not send this image: ${failure.message}`,
    );
    hideStage();
  } finally {
    if (mine === serial) setBusy(false);
  }
}

// ---- By link -----------------------------------------------------------

function classifyLink(url) {
  clearTimeout(previewTimer);
  showPreview(url, url);
  run("url", async () => ({
    answer: await classifyUrl(url),
    entry: { source: "url", name: url, thumb: url },
  }));
}

byId("url-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = byId("url-input").value.trim();
  if (!url) {
    showError("url", "Enter the address of an image, starting with https://.");
    byId("url-input").focus();
    return;
  }

  classifyLink(url);
});

// The preview follows the field: at once when it changes (a paste, Enter,
// leaving it), and PREVIEW_DELAY_MS after the last key while typing.
const PREVIEW_DELAY_MS = 500;
let previewTimer = null;

function previewLink() {
  clearTimeout(previewTimer);
  const url = byId("url-input").value.trim();
  if (byId("stage-image").getAttribute("src") === url && !byId("stage").hidden) return;
  clearError("url");
  if (/^https?:\/\/\S+$/i.test(url)) {
    showPreview(url, url, "Press Enter or Classify to name what is in it.");
  } else {
    hideStage();
  }
}

byId("url-input").addEventListener("change", previewLink);
byId("url-input").addEventListener("input", () => {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(previewLink, PREVIEW_DELAY_MS);
});

byId("stage-image").addEventListener("error", () => {
  if (byId("stage-image").getAttribute("src")) {
    byId("stage-figure").classList.add("broken");
  }
});

// ---- By upload: picker, drop, paste ------------------------------------

function classifyPhoto(file) {
  if (currentView !== "upload") navigate("/upload");
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  const name = file.name || "Pasted image";
  showPreview(previewUrl, name);

  run("upload", async () => {
    const prepared = await prepareUpload(file);
    if (prepared.scaled) {
      byId("stage-caption").textContent =
        `${name}: scaled from ${size(prepared.original)} to ` +
        `${size(prepared.sent)} before upload`;
    }
    return {
      answer: await classifyFile(prepared.blob, prepared.name),
      entry: {
        source: "upload",
        name,
        thumb: prepared.thumb,
        original: prepared.original,
        scaled: prepared.scaled,
      },
    };
  });
}

byId("file-input").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) classifyPhoto(file);
});
byId("upload-form").addEventListener("submit", (event) => event.preventDefault());

function firstFile(transfer) {
  return transfer ? Array.from(transfer.files || [])[0] || null : null;
}

function linkIn(transfer) {
  const text = transfer?.getData("text/uri-list") || transfer?.getData("text/plain");
  const url = (text || "").split(/\r?\n/).find((line) => /^https?:\/\//i.test(line));
  return url ? url.trim() : null;
}

let dragDepth = 0;
const overlay = byId("drop-overlay");

// Only drags that carry a file or a link; text dragged inside the page is
// left alone.
function carriesImage(event) {
  const types = Array.from(event.dataTransfer?.types || []);
  return types.includes("Files") || types.includes("text/uri-list");
}

window.addEventListener("dragenter", (event) => {
  if (!carriesImage(event)) return;
  event.preventDefault();
  dragDepth += 1;
  overlay.hidden = false;
});
window.addEventListener("dragover", (event) => {
  if (!carriesImage(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
});
window.addEventListener("dragleave", (event) => {
  if (!carriesImage(event)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) overlay.hidden = true;
});
window.addEventListener("drop", (event) => {
  if (!carriesImage(event)) return;
  event.preventDefault();
  dragDepth = 0;
  overlay.hidden = true;
  const file = firstFile(event.dataTransfer);
  const url = file ? null : linkIn(event.dataTransfer);
  if (file) {
    classifyPhoto(file);
  } else if (url) {
    navigate("/url");
    byId("url-input").value = url;
    classifyLink(url);
  }
});

document.addEventListener("paste", (event) => {
  const file = firstFile(event.clipboardData);
  if (!file) return;
  event.preventDefault();
  classifyPhoto(file);
});

// ---- Recent classifications ---------------------------------------------

const AGO = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

function ago(time) {
  const minutes = Math.round((time - Date.now()) / 60000);
  if (minutes === 0) return "just now";
  if (Math.abs(minutes) < 60) return AGO.format(minutes, "minute");
  const hours = Math.round(minutes / 60);
  if (Math.abs(hours) < 24) return AGO.format(hours, "hour");
  return AGO.format(Math.round(hours / 24), "day");
}

function renderRecent(entries) {
  const list = byId("recent-list");
  list.replaceChildren(
    ...entries.map((entry) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "recent-item";
      const thumb = document.createElement("img");
      thumb.alt = "";
      thumb.loading = "lazy";
      if (entry.thumb) thumb.src = entry.thumb;
      thumb.addEventListener("error", () => thumb.classList.add("broken"));
      const text = document.createElement("span");
      text.className = "recent-text";
      const label = document.createElement("strong");
      label.textContent = entry.predictions[0]?.label || "?";
      const detail = document.createElement("span");
      const best = entry.predictions[0]?.probability || 0;
      detail.textContent =
        `${percent(best, decimalsFor(entry.predictions))} · ` +
        `${entry.source === "url" ? "link" : "upload"} · ${ago(entry.at)}`;
      text.append(label, detail);
      button.append(thumb, text);
      button.title = entry.name;
      button.setAttribute(
        "aria-label",
        `${label.textContent}, ${detail.textContent}: show this result again`,
      );
      button.addEventListener("click", () => showRecent(entry));
      item.append(button);
      return item;
    }),
  );
  byId("recent").hidden = entries.length === 0;
}

function showRecent(entry) {
  navigate(entry.source === "url" ? "/url" : "/upload");
  if (entry.source === "url") byId("url-input").value = entry.name;
  showPreview(entry.thumb || "", entry.name, "", {
    thumbnail: entry.source === "upload",
  });
  showResult(entry);
  byId("stage").scrollIntoView({ behavior: "smooth", block: "start" });
}

byId("recent-clear").addEventListener("click", () => {
  clearRecent();
  renderRecent([]);
});

// ---- Model ---------------------------------------------------------------

async function loadModel() {
  try {
    const model = await getModel();
    byId("model-name").textContent = model.name;
    byId("model-version").textContent =
      model.version === null ? `none available (${model.state})` : model.version;
    byId("model-weights").textContent = model.weights || "unknown";
    if (model.random_weights) {
      byId("model-notice-text").textContent =
        "This model has random weights, not trained ones: its classes and " +
        "percentages are not meaningful.";
      byId("model-notice").hidden = false;
    }
  } catch (failure) {
    for (const id of ["model-name", "model-version", "model-weights"]) {
      byId(id).textContent = "unavailable";
    }
    showError("model", `The model cannot be described: ${failure.message}`);
  }
}

// ---- Start ---------------------------------------------------------------

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href"), { focus: true });
});
window.addEventListener("popstate", () => showView(location.pathname));

showView(location.pathname);
renderRecent(loadRecent());
loadModel();
