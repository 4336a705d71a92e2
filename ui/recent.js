// Recent classifications of this browser, kept in localStorage.
//
// Each entry holds what the recent list shows and what is needed to show
// the result again: a small thumbnail (a JPEG data URL, or the image's own
// address for a link), the predictions, the model and the time taken. At
// most LIMIT entries are kept, newest first; when storage is full, the
// oldest go first. Nothing leaves the browser.

const KEY = "deepclassify.recent.v1";
export const LIMIT = 12;

export function loadRecent() {
  try {
    const entries = JSON.parse(localStorage.getItem(KEY) || "[]");
    return Array.isArray(entries) ? entries : [];
  } catch {
    return [];
  }
}

function save(entries) {
  for (let kept = entries.length; kept >= 0; kept -= 1) {
    try {
      localStorage.setItem(KEY, JSON.stringify(entries.slice(0, kept)));
      return entries.slice(0, kept);
    } catch {
      // Storage full or refused: try again with fewer entries.
    }
  }
  return [];
}

/** Adds an entry in front and returns the list as stored. */
export function addRecent(entry) {
  return save([entry, ...loadRecent()].slice(0, LIMIT));
}

export function clearRecent() {
  try {
    localStorage.removeItem(KEY);
  } catch {
    // Storage refused: there is nothing kept to clear.
  }
}
