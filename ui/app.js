// DeepClassify's page: three views (home, by link, by upload) over one API.

const views = { "/": "home", "/url": "url", "/upload": "upload" };

function showView(path) {
  const name = views[path] || "home";
  document.querySelectorAll("[data-view]").forEach((section) => {
    section.hidden = section.dataset.view !== name;
  });
  document.getElementById("result").hidden = true;
}

function percent(probability) {
  return `${(probability * 100).toFixed(2)}%`;
}

function showResult(answer, imageSource) {
  const list = document.getElementById("predictions");
  list.replaceChildren();
  for (const prediction of answer.predictions) {
    const item = document.createElement("li");
    item.innerHTML = `<div class="line"><span class="name"></span><span class="pct"></span></div>
      <div class="bar"><span></span></div>`;
    item.querySelector(".name").textContent = prediction.label;
    item.querySelector(".pct").textContent = percent(prediction.probability);
    item.querySelector(".bar span").style.width = percent(prediction.probability);
    list.append(item);
  }
  const model = answer.model;
  document.getElementById("result-meta").textContent =
    `${model.name} version ${model.version}, weights: ${model.weights} · ` +
    `${Math.round(answer.timing_ms.total)} ms`;
  document.getElementById("preview").src = imageSource;
  document.getElementById("result").hidden = false;
}

async function classify(form, body, headers, imageSource) {
  const error = form.querySelector(".error");
  const button = form.querySelector("button");
  error.hidden = true;
  button.disabled = true;
  button.textContent = "Classifying…";
  try {
    const response = await fetch("/api/v1/classify", { method: "POST", body, headers });
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error(answer?.detail || `The server answered ${response.status}.`);
    }
    showResult(answer, imageSource);
  } catch (failure) {
    error.textContent = failure instanceof TypeError
      ? "The server cannot be reached. Check your connection and try again."
      : failure.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
    button.textContent = "Classify";
  }
}

async function loadModel() {
  const line = document.getElementById("model-line");
  const notice = document.getElementById("model-notice");
  try {
    const response = await fetch("/api/v1/model");
    const model = await response.json();
    if (!response.ok) throw new Error(model.detail);
    line.textContent = `Answering: ${model.name} version ${model.version}, weights: ${model.weights}.`;
    if (model.random_weights) {
      notice.textContent = "This model has random weights: its classes are not meaningful.";
      notice.hidden = false;
    }
  } catch (failure) {
    line.textContent = `The model is not available: ${failure.message}`;
  }
}

document.getElementById("url-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = document.getElementById("url-input").value.trim();
  classify(event.target, JSON.stringify({ url }), { "Content-Type": "application/json" }, url);
});

document.getElementById("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = document.getElementById("file-input").files[0];
  if (!file) return;
  const body = new FormData();
  body.append("image", file);
  classify(event.target, body, {}, URL.createObjectURL(file));
});

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='/']");
  if (!link || !(link.getAttribute("href") in views)) return;
  event.preventDefault();
  history.pushState(null, "", link.getAttribute("href"));
  showView(location.pathname);
});
window.addEventListener("popstate", () => showView(location.pathname));

showView(location.pathname);
loadModel();
