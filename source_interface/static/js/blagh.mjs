// Blagh's reporter pages with JavaScript: the same forms, sealed in the browser.
//
// Every page works without this script (Tor Browser's Safest level): the server then seals what
// it receives as it arrives. When this script runs and WebAssembly is there, it takes over the
// forms so that the server receives envelopes only (docs/js-path.md):
//
//   report     the fields are sealed to the analysts (and to the source's own key when a
//              codename is kept: the codename is made and its keys derived here, and only the
//              public key and the login secret are sent); each file is sealed to the analysts
//              and uploaded in pieces that survive a dropped circuit;
//   login      the codename is checked and derived here; only the login secret is sent;
//   followup   the source's reports and the analysts' replies are opened here, with the key
//              kept in this tab (sessionStorage); messages and files are sealed here;
//   forget     after deleting everything: the key kept in this tab is dropped.
//
// If anything is missing (WebAssembly, a module whose integrity hash does not match), the
// script stops before touching the page and the no-JavaScript path stays as it was; the
// page says which protection applies. Nothing here is minified: read it.

const script = document.getElementById("blagh-script");
const KEY_STORAGE = "blagh.source-key";

// The outcome is also set on <html data-blagh="sealing|server">, for styles and tests.
main().then(
  (outcome) => {
    document.documentElement.dataset.blagh = outcome;
  },
  (error) => {
    // Whatever failed, the page is still the plain form, which works: leave it be.
    document.documentElement.dataset.blagh = "server";
    console.warn("blagh: staying on the no-JavaScript path:", error);
  },
);

async function main() {
  const page = script.dataset.page;
  if (page === "forget") {
    forgetKey();
    return "server";
  }
  const protection = document.getElementById("protection");
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    if (protection) protection.textContent = protection.dataset.noWasm;
    return "server";
  }
  if (!browserHasTheRest()) return "server";
  await preload(JSON.parse(script.dataset.modules));
  const sealing = await import("./sealing.mjs");
  const uploads = await import("./uploads.mjs");
  const metadata = await import("./metadata.mjs");
  await sealing.ready();
  const context = {
    sealing,
    uploads,
    metadata,
    analysts: script.dataset.analysts.split(",").map((key) => sealing.fromBase64(key)),
    salt: script.dataset.salt,
  };
  if (page === "report") enhanceReport(context);
  else if (page === "login") enhanceLogin(context);
  else if (page === "followup") await enhanceFollowup(context);
  if (protection) protection.textContent = protection.dataset.browser;
  return "sealing";
}

function browserHasTheRest() {
  return (
    typeof fetch === "function" &&
    typeof FormData === "function" &&
    typeof TextEncoder === "function" &&
    typeof crypto === "object" &&
    typeof crypto.getRandomValues === "function" &&
    typeof Blob.prototype.arrayBuffer === "function"
  );
}

/**
 * Fetch our other modules and libsodium.js, each checked against the hash the page gives
 * (subresource integrity): a module whose bytes differ is refused, and the import fails.
 */
function preload(modules) {
  const loads = Object.entries(modules).map(
    ([href, integrity]) =>
      new Promise((resolve, reject) => {
        const link = document.createElement("link");
        link.rel = "modulepreload";
        link.href = href;
        link.integrity = integrity;
        link.addEventListener("load", resolve);
        link.addEventListener("error", () => reject(new Error(`could not load ${href}`)));
        document.head.append(link);
      }),
  );
  return Promise.all(loads);
}

// --- Small helpers ---------------------------------------------------------------------------

function texts(id) {
  const element = document.getElementById(id);
  return element ? element.dataset : {};
}

function formToken() {
  const field = document.querySelector('input[name="form_token"]');
  return field ? field.value : "";
}

function setFormToken(token) {
  if (typeof token !== "string" || token.length === 0) return;
  for (const field of document.querySelectorAll('input[name="form_token"]')) field.value = token;
}

/** Let the browser paint (a status line) before a long synchronous step (argon2id). */
function nextPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

/** Someone's text (a file name, typed words) set inside one of our translated sentences, between
 * Unicode's isolate marks (FSI … PDI, <bdi> for plain text): Latin in an Arabic sentence keeps
 * its order and leaves the sentence's alone (source_interface/i18n.py, isolate). */
function isolate(text) {
  return `\u2068${text}\u2069`;
}

function codePoints(text) {
  return Array.from(text).length;
}

/** POST a FormData, answer in JSON ({next} or {error}); a failure of any kind is {error: failed}. */
async function post(url, body, failed) {
  let response;
  try {
    response = await fetch(url, { method: "POST", body, credentials: "same-origin" });
  } catch {
    return { error: failed };
  }
  if (!(response.headers.get("Content-Type") || "").startsWith("application/json")) {
    return { error: failed };
  }
  const answer = await response.json();
  setFormToken(answer.form_token);
  if (!response.ok || typeof answer.next !== "string") return { ...answer, error: answer.error || failed };
  return answer;
}

/**
 * What to do when a form could not be sent here: `true` if it was handled.
 *
 * The server full (too many uploads in progress): send the form as it is, without JavaScript,
 * files and all; the server seals it as it arrives, and nothing typed or chosen is lost (the
 * form is the page's own, untouched). Its disk short of space: say so, keep the form.
 */
function handleRefusal(form, error, progress, marks, text) {
  if (error && error.serverFull) {
    progress.say(text.sendingPlain);
    useStrippedFiles(form);
    document.documentElement.dataset.blagh = "server";
    HTMLFormElement.prototype.submit.call(form);
    return true;
  }
  if (error && error.diskFull) {
    progress.hide();
    marks.alert(form, error.serverMessage || text.failed);
    return true;
  }
  return false;
}

/**
 * Before the form goes to the server as it is: put the photos already cleaned here in its file
 * field, so that ticking "remove location and device data" holds on that path too.
 */
function useStrippedFiles(form) {
  const box = form.querySelector("[data-strip-metadata]");
  const input = form.elements.files;
  if (!box || !box.checked || !input || typeof DataTransfer !== "function") return;
  const files = new DataTransfer();
  for (const file of input.files) files.items.add(stripped.get(file) || file);
  input.files = files.files;
}

/** The server's answer says which files it no longer has: forget them here too. */
function forgetLost(form, answer, uploaded) {
  if (answer.uploads_lost) uploaded.clear();
  if (answer.draft_lost) {
    for (const input of form.querySelectorAll('input[name="kept_file"]')) {
      const notice = input.closest(".notice");
      if (notice) notice.remove();
      else input.remove();
    }
  }
}

let wordListPromise = null;

/** The codename word lists ({drawn, accepted}), fetched once and only when needed, checked. */
function wordList(sealing) {
  if (wordListPromise === null) {
    wordListPromise = fetch(script.dataset.wordlist, {
      integrity: script.dataset.wordlistIntegrity,
      credentials: "same-origin",
    })
      .then((response) => {
        if (!response.ok) throw new Error("no word list");
        return response.text();
      })
      .then((text) => sealing.parseWordList(text));
    wordListPromise.catch(() => {
      wordListPromise = null;
    });
  }
  return wordListPromise;
}

// The source's secret key, kept in this tab only (sessionStorage: gone when the tab closes).
function storeKey(sealing, secretKey) {
  try {
    sessionStorage.setItem(KEY_STORAGE, sealing.toBase64(secretKey));
  } catch {
    // no storage here: the follow-up page will ask for the codename again
  }
}

function loadKey(sealing) {
  try {
    const stored = sessionStorage.getItem(KEY_STORAGE);
    return stored ? sealing.fromBase64(stored) : null;
  } catch {
    return null;
  }
}

function forgetKey() {
  try {
    sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // nothing was kept
  }
}

/** A progress area: one line of text (announced politely) and a bar. */
class Progress {
  constructor(area) {
    this.area = area;
    this.line = document.createElement("p");
    this.line.setAttribute("role", "status");
    this.bar = document.createElement("progress");
    this.bar.style.width = "100%";
    this.bar.hidden = true;
    area.replaceChildren(this.line, this.bar);
  }

  say(text) {
    this.area.hidden = false;
    this.bar.hidden = true;
    this.line.textContent = text;
  }

  file(text, sent, total) {
    this.area.hidden = false;
    if (this.line.textContent !== text) this.line.textContent = text;
    this.bar.hidden = false;
    this.bar.max = total;
    this.bar.value = sent;
    this.bar.setAttribute("aria-label", text);
  }

  hide() {
    this.area.hidden = true;
  }
}

/** Errors shown by the script, removed before the next attempt. */
class ErrorMarks {
  constructor() {
    this.marks = [];
  }

  clear() {
    for (const undo of this.marks) undo();
    this.marks = [];
  }

  /** An error message before `anchor` (inside `parent` if given), tied to `field`. */
  field(field, anchor, message, id) {
    const p = document.createElement("p");
    p.className = "error";
    p.id = id;
    p.textContent = message;
    anchor.before(p);
    const before = field ? [field.getAttribute("aria-invalid"), field.getAttribute("aria-describedby")] : null;
    if (field) {
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", id);
    }
    this.marks.push(() => {
      p.remove();
      if (field) {
        restoreAttribute(field, "aria-invalid", before[0]);
        restoreAttribute(field, "aria-describedby", before[1]);
      }
    });
    return p;
  }

  /** An alert at the top of a form. */
  alert(form, message) {
    const box = document.createElement("div");
    box.className = "error";
    box.setAttribute("role", "alert");
    const p = document.createElement("p");
    p.textContent = message;
    box.append(p);
    form.before(box);
    this.marks.push(() => box.remove());
    return box;
  }
}

function restoreAttribute(element, name, value) {
  if (value === null) element.removeAttribute(name);
  else element.setAttribute(name, value);
}

function setBusy(form, busy) {
  for (const button of form.querySelectorAll("button")) button.disabled = busy;
  form.setAttribute("aria-busy", busy ? "true" : "false");
}

/**
 * The files to seal: without location and device data (metadata.mjs) when the form's box is
 * ticked, else the originals. Each result is cached per file, so a retry re-sends the same
 * bytes and reuses what was uploaded. Null (and the form's error shown) when a photo cannot
 * be read: the reporter asked for its data to go, so it is not sent as it is.
 */
async function prepareFiles(context, form, files, text, showError) {
  const box = form.querySelector("[data-strip-metadata]");
  if (!box || !box.checked) return files;
  const prepared = [];
  for (const file of files) {
    if (!stripped.has(file)) {
      try {
        stripped.set(file, await context.metadata.withoutMetadata(file));
      } catch (error) {
        if (!(error instanceof context.metadata.MetadataError)) throw error;
        showError(text.metadataFailed.replace("{name}", isolate(file.name)));
        return null;
      }
    }
    prepared.push(stripped.get(file));
  }
  return prepared;
}

const stripped = new WeakMap();

/** Upload each file (sealed to the analysts); the ids, in order. Reuses what a failed try sent. */
async function uploadAll(context, files, progress, text, done) {
  const ids = [];
  for (const file of files) {
    if (!done.has(file)) {
      const label = text.sendingFile.replace("{name}", isolate(file.name));
      progress.file(label, 0, 1);
      const id = await context.uploads.uploadFile(file, context.analysts, {
        formToken,
        onProgress: (sent, total) => progress.file(label, sent, total),
        onRetry: () => progress.say(text.retrying),
      });
      done.set(file, id);
    }
    ids.push(done.get(file));
  }
  return ids;
}

// --- The report form -------------------------------------------------------------------------

const LOCAL_DIGITS = "٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹";
const PHONE_CHARACTERS = new Set("0123456789+-(). /");
const LINE_BREAKS = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/; // Python's str.splitlines()

function enhanceReport(context) {
  const form = document.getElementById("report-form");
  const text = texts("blagh-text");
  const pending = loadPending(context.sealing);
  if (pending) {
    // A codename shown here and not yet typed back (the page was left: another language, a
    // reload): its report is stored, so show the codename again rather than a new form.
    showCodename(context, pending.codename, pending.keys, pending.next, text);
    return;
  }
  const progress = new Progress(document.getElementById("progress"));
  const marks = new ErrorMarks();
  showMetadataChoice(form);
  const uploaded = new Map(); // File -> upload id, kept across attempts
  // The codename is made once per form: an attempt whose answer was lost may have stored the
  // report, and the server answers the next attempt (same submission id) with that one.
  const made = { codename: null, keys: null };
  let busy = false;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    setBusy(form, true);
    sendReport(context, form, text, progress, marks, uploaded, made)
      .catch((error) => {
        console.warn("blagh:", error);
        if (handleRefusal(form, error, progress, marks, text)) return;
        progress.hide();
        marks.alert(form, text.failed);
      })
      .finally(() => {
        busy = false;
        setBusy(form, false);
      });
  });
}

/** This page can clean photos: offer the box (ticked) in place of the no-JS advice. */
function showMetadataChoice(form) {
  for (const element of form.querySelectorAll("[data-metadata-js]")) element.hidden = false;
  for (const element of form.querySelectorAll("[data-metadata-no-js]")) element.hidden = true;
}

/** Arabic-Indic and Persian digits as ASCII ones, as the server reads them. */
function localDigits(text) {
  return Array.from(text, (c) => {
    const at = LOCAL_DIGITS.indexOf(c);
    return at < 0 ? c : String(at % 10);
  }).join("");
}

/**
 * The files kept from an earlier attempt: all the names the page lists (the server checks it
 * still has them all), those that stay, and the positions of those whose "remove" box is ticked.
 */
function keptFiles(form) {
  const listed = [];
  const kept = [];
  const removed = [];
  for (const input of form.querySelectorAll('input[name="kept_file"]')) {
    const box = input.parentElement.querySelector('input[name="remove_file"]');
    if (box && box.checked) removed.push(box.value);
    else kept.push(input.value);
    listed.push(input.value);
  }
  return { listed, kept, removed };
}

function readReport(form) {
  const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
  const phone = localDigits(value("phone"));
  const identity = { name: value("name"), phone, email: value("email") };
  const files = Array.from(form.elements.files.files);
  const { kept, listed, removed } = keptFiles(form);
  return {
    category: value("category"),
    danger: form.elements.danger.checked,
    description: value("description"),
    links: value("links")
      .split(LINE_BREAKS)
      .map((line) => line.trim())
      .filter((line) => line.length > 0),
    platform: value("platform"),
    seenOn: { day: localDigits(value("seen_day")), month: value("seen_month"), year: localDigits(value("seen_year")) },
    identity,
    files,
    kept,
    listed,
    removed,
    keepCodename: form.elements.keep_codename.value !== "no",
    categories: Array.from(form.querySelectorAll('input[name="category"]'), (input) => input.value),
  };
}

/** The same checks as the server's (source_interface/forms.py), with its messages. */
function checkReport(report, text) {
  const errors = new Map();
  if (!report.categories.includes(report.category)) errors.set("category", text.category);
  if (report.description.length === 0) errors.set("description", text.description);
  if (report.links.length > 50 || report.links.some((link) => codePoints(link) > 2048)) {
    errors.set("links", text.links);
  }
  if (codePoints(report.platform) > 200) errors.set("platform", text.platform);
  const seen = report.seenOn;
  if (seen.day || seen.month || seen.year) {
    const day = parseDay(seen);
    if (!seen.day || !seen.month || !/^\d+$/.test(seen.day) || !/^\d{4}$/.test(seen.year)) {
      errors.set("seen_on", text.seenOn);
    } else if (day === null) errors.set("seen_on", text.seenOnInvalid);
    else if (day > Date.now() + 86400000) errors.set("seen_on", text.seenOnFuture);
  }
  const { name, phone, email } = report.identity;
  if (codePoints(name) > 200) errors.set("name", text.name);
  if (phone && (codePoints(phone) > 40 || Array.from(phone).some((c) => !PHONE_CHARACTERS.has(c)))) {
    errors.set("phone", text.phone);
  }
  if (email && (codePoints(email) > 254 || !trimAt(email).includes("@") || email.includes(" "))) {
    errors.set("email", text.email);
  }
  checkFiles(report.files, report.kept.length, text, errors);
  return errors;
}

function checkFiles(files, keptCount, text, errors) {
  if (files.length + keptCount > Number(text.maxFiles)) errors.set("files", text.files);
  else if (files.reduce((sum, file) => sum + file.size, 0) > Number(text.maxBytes)) {
    errors.set("files", text.tooLarge);
  }
}

function trimAt(text) {
  return text.replace(/^@+|@+$/g, "");
}

/** Midnight UTC of a day given as its three parts (as typed), or null if it is not a real day. */
function parseDay({ day, month, year }) {
  if (!/^\d{1,2}$/.test(day) || !/^\d{1,2}$/.test(month) || !/^\d{4}$/.test(year)) return null;
  const [d, m, y] = [day, month, year].map(Number);
  const time = Date.UTC(y, m - 1, d);
  const date = new Date(time);
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) {
    return null;
  }
  return time;
}

/** A day's three parts as year-month-day (checked beforehand), or null when none was given. */
function isoDay(seen) {
  const time = seen.day ? parseDay(seen) : null;
  return time === null ? null : new Date(time).toISOString().slice(0, 10);
}

function showReportErrors(form, errors, text, marks) {
  marks.alert(form, text.correctBelow);
  let first = null;
  for (const [name, message] of errors) {
    let field;
    let anchor;
    if (name === "category") {
      const fieldset = form.querySelector('input[name="category"]').closest("fieldset");
      anchor = fieldset.querySelector("legend").nextElementSibling;
      field = null;
      first = first || fieldset.querySelector('input[name="category"]');
    } else if (name === "seen_on") {
      const fieldset = document.getElementById("seen_on");
      anchor = fieldset.querySelector("legend").nextElementSibling;
      field = document.getElementById("seen_day");
      first = first || field;
    } else {
      field = document.getElementById(name);
      anchor = field;
      first = first || field;
    }
    marks.field(field, anchor, message, `${name}-error`);
  }
  if (first) first.focus();
}

async function sendReport(context, form, text, progress, marks, uploaded, made) {
  const { sealing } = context;
  marks.clear();
  const report = readReport(form);
  const errors = checkReport(report, text);
  if (errors.size > 0) {
    showReportErrors(form, errors, text, marks);
    return;
  }
  if (report.keepCodename && made.codename === null) {
    progress.say(text.makingCodename);
    await nextPaint();
    made.codename = sealing.generateCodename((await wordList(sealing)).drawn);
    made.keys = sealing.deriveSourceKeys(made.codename, context.salt);
  }
  const codename = report.keepCodename ? made.codename : null;
  const keys = report.keepCodename ? made.keys : null;
  const files = await prepareFiles(context, form, report.files, text, (message) =>
    showReportErrors(form, new Map([["files", message]]), text, marks),
  );
  if (files === null) return;
  const uploadIds = await uploadAll(context, files, progress, text, uploaded);

  progress.say(text.sendingReport);
  const fields = {
    category: report.category,
    danger: report.danger,
    description: report.description,
    links: report.links,
    platform: report.platform,
    seen_on: isoDay(report.seenOn),
    identity: Object.values(report.identity).some((v) => v) ? report.identity : null,
    attachments: [...report.kept, ...report.files.map((file) => sealing.attachmentName(file.name))],
  };
  const recipients = keys ? [...context.analysts, keys.publicKey] : context.analysts;
  const body = new FormData();
  body.append("form_token", formToken());
  if (form.elements.submission) body.append("submission", form.elements.submission.value);
  body.append("sealed_fields", sealing.toBase64(sealing.sealBytes(sealing.encodeDocument("report", fields), recipients)));
  for (const id of uploadIds) body.append("upload", id);
  if (form.elements.draft) body.append("draft", form.elements.draft.value);
  for (const name of report.listed) body.append("kept_file", name);
  for (const position of report.removed) body.append("remove_file", position);
  if (keys) {
    body.append("source_key", sealing.toBase64(keys.publicKey));
    body.append("login_secret", sealing.toBase64(keys.loginSecret));
  }
  const answer = await post(form.action, body, text.failed);
  if (answer.error) {
    forgetLost(form, answer, uploaded);
    progress.hide();
    marks.alert(form, answer.error);
    return;
  }
  uploaded.clear();
  if (keys) showCodename(context, codename, keys, answer.next, text);
  else location.assign(answer.next);
}

// The codename lives only in this page until it is typed back (the server never sees it):
// leaving the page would lose it, while the report is stored (issue 14).  So, until then, it
// is also kept in this tab's sessionStorage (gone when the tab closes, removed once typed
// back), the report page shows it again when it loads (after a language switch, a reload, Back
// and Forward), links that leave ask first, and closing the tab brings the browser's warning.
const PENDING_STORAGE = "blagh.pending-codename";

function keepPending(sealing, codename, keys, next) {
  try {
    const pending = { codename, next, secretKey: sealing.toBase64(keys.secretKey) };
    sessionStorage.setItem(PENDING_STORAGE, JSON.stringify(pending));
  } catch {
    // no storage here: the panel's questions and the browser's warning still guard it
  }
}

function loadPending(sealing) {
  try {
    const pending = JSON.parse(sessionStorage.getItem(PENDING_STORAGE) || "null");
    if (!pending || typeof pending.codename !== "string" || typeof pending.next !== "string") {
      return null;
    }
    return { ...pending, keys: { secretKey: sealing.fromBase64(pending.secretKey) } };
  } catch {
    return null;
  }
}

function forgetPending() {
  try {
    sessionStorage.removeItem(PENDING_STORAGE);
  } catch {
    // nothing was kept
  }
}

/** The codename, shown once, typed back to show it was written down; then the follow-up page. */
function showCodename(context, codename, keys, next, text) {
  keepPending(context.sealing, codename, keys, next);
  const panel = document.getElementById("js-codename");
  const main = document.getElementById("main");
  for (const child of main.children) if (child !== panel && child !== script) child.hidden = true;
  panel.hidden = false;
  document.getElementById("js-codename-words").textContent = codename;
  panel.querySelector("h1").focus();
  const guard = guardCodename(text);
  const words = codename.split(" ");
  const check = document.getElementById("js-codename-check");
  const typed = document.getElementById("js-codename-typed");
  const error = document.getElementById("js-codename-error");
  check.addEventListener("submit", (event) => {
    event.preventDefault();
    let given;
    try {
      given = context.sealing.codenameWords(typed.value);
    } catch {
      given = [];
    }
    const wrong = [];
    words.forEach((word, i) => {
      if (given[i] !== word) wrong.push(i + 1);
    });
    for (let i = words.length; i < given.length; i++) wrong.push(i + 1);
    if (wrong.length > 0) {
      error.textContent = text.mismatch.replace("{positions}", wrong.join(", "));
      error.hidden = false;
      typed.setAttribute("aria-invalid", "true");
      typed.setAttribute("aria-describedby", error.id);
      typed.focus();
      return;
    }
    guard.release();
    forgetPending();
    storeKey(context.sealing, keys.secretKey);
    location.assign(next);
  });
}

/**
 * Until the codename is typed back: a language link keeps it (the page in the other language
 * shows it again), a link that leaves (the site's name) asks first in the panel, a call to an
 * emergency number goes through at once (it does not leave the page), and anything else that
 * unloads the page (closing the tab, a typed address) gets the browser's own warning.
 */
function guardCodename(text) {
  const leave = document.getElementById("js-codename-leave");
  let allowed = false;
  let target = null;
  const warn = (event) => {
    if (allowed) return;
    event.preventDefault();
    event.returnValue = "";
  };
  const clicked = (event) => {
    const link = event.target.closest ? event.target.closest("a[href]") : null;
    if (!link || allowed || link.closest("#js-codename")) return;
    const url = new URL(link.href, location.href);
    if (url.protocol !== "http:" && url.protocol !== "https:") return; // tel: and the like
    if (url.origin === location.origin && url.pathname === location.pathname && url.hash) return;
    if (link.closest("nav.languages")) {
      allowed = true; // the pending codename is kept: the next page shows it again
      return;
    }
    event.preventDefault();
    target = url.href;
    leave.hidden = false;
    leave.querySelector("button[data-stay]").focus();
  };
  leave.querySelector("button[data-stay]").addEventListener("click", () => {
    leave.hidden = true;
    target = null;
    document.getElementById("js-codename-typed").focus();
  });
  leave.querySelector("button[data-leave]").addEventListener("click", () => {
    allowed = true;
    forgetPending();
    if (target) location.assign(target);
  });
  window.addEventListener("beforeunload", warn);
  document.addEventListener("click", clicked, true);
  return {
    release() {
      allowed = true;
      window.removeEventListener("beforeunload", warn);
      document.removeEventListener("click", clicked, true);
    },
  };
}

// --- Codename checks (login, unlocking the follow-up page) -----------------------------------

/** Check and derive a typed codename here; {keys} or {error} (a message for the reporter). */
async function deriveTyped(context, typed, text, progress) {
  let normalised;
  try {
    normalised = context.sealing.checkCodename(typed, (await wordList(context.sealing)).accepted);
  } catch (error) {
    if (!(error instanceof context.sealing.CodenameError)) throw error;
    if (error.reason === "too-long") return { error: text.tooLong };
    if (error.reason === "unknown-words") {
      return { error: text.unknownWords.replace("{words}", isolate(error.words.slice(0, 7).join(", "))) };
    }
    return { error: text.wordCount };
  }
  progress.say(text.checking);
  await nextPaint();
  return { keys: context.sealing.deriveSourceKeys(normalised, context.salt) };
}

function enhanceLogin(context) {
  const form = document.getElementById("login-form");
  const input = document.getElementById("codename");
  const text = texts("blagh-codename-text");
  const progress = new Progress(document.getElementById("progress"));
  let busy = false;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    setBusy(form, true);
    login(context, form, input, text, progress)
      .catch((error) => {
        console.warn("blagh:", error);
        showLoginError(input, text.failed);
      })
      .finally(() => {
        busy = false;
        setBusy(form, false);
        progress.hide();
      });
  });
}

async function login(context, form, input, text, progress) {
  const derived = await deriveTyped(context, input.value, text, progress);
  if (derived.error) {
    showLoginError(input, derived.error);
    return;
  }
  const body = new FormData();
  body.append("form_token", formToken());
  body.append("login_secret", context.sealing.toBase64(derived.keys.loginSecret));
  const answer = await post(form.action, body, text.failed);
  if (answer.error) {
    showLoginError(input, answer.error);
    return;
  }
  storeKey(context.sealing, derived.keys.secretKey);
  location.assign(answer.next);
}

function showLoginError(input, message) {
  let error = document.getElementById("codename-error");
  if (!error) {
    error = document.createElement("p");
    error.className = "error";
    error.id = "codename-error";
    error.setAttribute("role", "alert");
    input.before(error);
  }
  error.textContent = message;
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-describedby", error.id);
  input.focus();
}

// --- The follow-up page ----------------------------------------------------------------------

async function enhanceFollowup(context) {
  const { sealing } = context;
  const text = texts("blagh-text");
  const sourceKey = script.dataset.sourceKey ? sealing.fromBase64(script.dataset.sourceKey) : null;
  const logout = document.getElementById("logout-form");
  if (logout) logout.addEventListener("submit", forgetKey);
  if (sourceKey) {
    for (const form of document.querySelectorAll("form.message-form")) {
      enhanceMessageForm(context, form, text, sourceKey);
    }
  }
  if (script.dataset.keyHeld !== "browser") return;
  let secretKey = loadKey(sealing);
  if (secretKey && sourceKey && !sealing.sameKey(sealing.publicKeyOf(secretKey), sourceKey)) {
    secretKey = null; // the key of another codename, left in this tab
  }
  if (secretKey) await openItems(context, secretKey, text);
  else askForCodename(context, sourceKey, text);
}

/** Open, with the key held here, each sealed item the page lists, and show what it says. */
async function openItems(context, secretKey, text) {
  const { sealing } = context;
  const categories = JSON.parse(text.categories || "{}");
  for (const element of document.querySelectorAll("[data-sealed]")) {
    const isFields = element.hasAttribute("data-fields");
    const kind = isFields ? "report" : element.dataset.kind;
    let opened;
    try {
      const response = await fetch(element.dataset.sealed, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`item: ${response.status}`);
      const envelope = new Uint8Array(await response.arrayBuffer());
      const plain = sealing.openBytes(envelope, [secretKey]);
      try {
        opened = sealing.decodeDocument(plain, kind);
      } catch (error) {
        // A reply item may hold the status the analysts set (blagh/reporter_status.py).
        if (kind !== "reply") throw error;
        opened = sealing.decodeDocument(plain, "status");
      }
    } catch (error) {
      console.warn("blagh:", error);
      element.querySelector(isFields ? "[data-title]" : ".text").textContent = text.cannotOpen;
      continue;
    }
    if (isFields) {
      // Only the title: the day beside it is already written in the page's language.
      const slug = String(opened.category || "");
      element.querySelector("[data-title]").textContent = categories[slug] || slug;
      const danger = element.parentElement.querySelector("[data-danger]");
      if (danger) danger.hidden = !opened.danger;
    } else if (opened.kind === "status") {
      const labels = JSON.parse(text.statusLabels || "{}");
      const messages = JSON.parse(text.statusMessages || "{}");
      const day = new Date(`${opened.day}T12:00:00Z`);
      const shown = Number.isNaN(day.getTime())
        ? String(opened.day)
        : new Intl.DateTimeFormat(document.documentElement.lang || undefined, { dateStyle: "long" }).format(day);
      element.querySelector(".meta").textContent = `${labels[opened.status] || ""} — ${shown}`;
      element.querySelector(".text").textContent = messages[opened.message] || "";
    } else {
      element.querySelector(".text").textContent = String(opened.text || "");
      const attachments = Array.isArray(opened.attachments) ? opened.attachments.map(String) : [];
      const files = element.querySelector("[data-files]");
      if (files && attachments.length > 0) {
        // Each name isolated in its own <bdi>, as the page does without JavaScript.
        files.querySelector("span").replaceChildren(
          ...attachments.flatMap((name, index) => {
            const isolated = document.createElement("bdi");
            isolated.textContent = name;
            return index ? [", ", isolated] : [isolated];
          }),
        );
        files.hidden = false;
      }
    }
  }
}

/** This tab lost the key (a new tab, a closed one): derive it again from the codename. */
function askForCodename(context, sourceKey, text) {
  const section = document.getElementById("unlock");
  const form = document.getElementById("unlock-form");
  const input = document.getElementById("unlock-codename");
  const error = document.getElementById("unlock-error");
  const codenameText = texts("blagh-codename-text");
  const progress = new Progress(form.querySelector(".progress"));
  section.hidden = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const derived = await deriveTyped(context, input.value, codenameText, progress);
    progress.hide();
    let message = derived.error;
    if (!message && !(sourceKey && context.sealing.sameKey(derived.keys.publicKey, sourceKey))) {
      message = codenameText.noMatch;
    }
    if (message) {
      error.textContent = message;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", error.id);
      input.focus();
      return;
    }
    storeKey(context.sealing, derived.keys.secretKey);
    section.hidden = true;
    await openItems(context, derived.keys.secretKey, text);
  });
}

function enhanceMessageForm(context, form, text, sourceKey) {
  const progress = new Progress(form.querySelector(".progress"));
  const marks = new ErrorMarks();
  showMetadataChoice(form);
  const uploaded = new Map();
  let busy = false;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    setBusy(form, true);
    sendMessage(context, form, text, sourceKey, progress, marks, uploaded)
      .catch((error) => {
        console.warn("blagh:", error);
        if (handleRefusal(form, error, progress, marks, text)) return;
        progress.hide();
        marks.alert(form, text.failed);
      })
      .finally(() => {
        busy = false;
        setBusy(form, false);
      });
  });
}

async function sendMessage(context, form, text, sourceKey, progress, marks, uploaded) {
  const { sealing } = context;
  marks.clear();
  const message = form.elements.message.value.trim();
  const files = Array.from(form.elements.files.files);
  const { kept, listed, removed } = keptFiles(form);
  const errors = new Map();
  if (!message && files.length === 0 && kept.length === 0) errors.set("message", text.message);
  checkFiles(files, kept.length, text, errors);
  if (errors.size > 0) {
    for (const [name, error] of errors) {
      const field = form.elements[name];
      marks.field(field, field, error, `${field.id}-error`);
    }
    form.elements[errors.keys().next().value].focus();
    return;
  }
  const field = form.elements.files;
  const prepared = await prepareFiles(context, form, files, text, (message) => {
    marks.field(field, field, message, `${field.id}-error`);
    field.focus();
  });
  if (prepared === null) return;
  const uploadIds = await uploadAll(context, prepared, progress, text, uploaded);
  progress.say(text.sendingMessage);
  const sent = {
    text: message,
    attachments: [...kept, ...files.map((file) => sealing.attachmentName(file.name))],
  };
  const body = new FormData();
  body.append("form_token", formToken());
  body.append(
    "sealed_message",
    sealing.toBase64(sealing.sealBytes(sealing.encodeDocument("message", sent), [...context.analysts, sourceKey])),
  );
  for (const id of uploadIds) body.append("upload", id);
  if (form.elements.draft) body.append("draft", form.elements.draft.value);
  for (const name of listed) body.append("kept_file", name);
  for (const position of removed) body.append("remove_file", position);
  const answer = await post(form.action, body, text.failed);
  if (answer.error) {
    forgetLost(form, answer, uploaded);
    progress.hide();
    marks.alert(form, answer.error);
    return;
  }
  uploaded.clear();
  location.assign(answer.next);
}
