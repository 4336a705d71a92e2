// The DeepClassify HTTP API as the page uses it: model status and classify.
//
// Every failure becomes an ApiError whose message is meant for a person: the
// API's own `detail` when it answered, or a sentence saying the server could
// not be reached.

export const UNREACHABLE =
  "The DeepClassify server cannot be reached. Check your connection, " +
  "then try again.";

export class ApiError extends Error {
  constructor(message, status = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

async function call(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError(UNREACHABLE);
  }

  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = answer && typeof answer.detail === "string" ? answer.detail : null;
    throw new ApiError(
      detail || `The server answered ${response.status} ${response.statusText}.`,
      response.status,
    );
  }
  if (answer === null) {
    throw new ApiError("The server's answer could not be read.", response.status);
  }

  return answer;
}

/** Describes the model that answers: name, version, weights, state. */
export function getModel() {
  return call("/api/v1/model", { headers: { Accept: "application/json" } });
}

/** Classifies the image at a URL, fetched by the server. */
export function classifyUrl(url) {
  return call("/api/v1/classify", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ url }),
  });
}

/** Classifies an image file or blob, sent as the multipart field `image`. */
export function classifyFile(blob, filename) {
  const body = new FormData();
  body.append("image", blob, filename);
  return call("/api/v1/classify", {
    method: "POST",
    headers: { Accept: "application/json" },
    body,
  });
}
