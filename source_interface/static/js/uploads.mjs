// Sending a file as an envelope, sealed in the browser, in pieces that survive a dropped circuit.
//
// The file is read in 1 MiB slices and sealed as it is read (docs/envelope.md: the attachment
// header line of docs/payloads.md, then the file's bytes), so memory stays flat whatever its
// size. The ciphertext goes to the server in numbered pieces of the size the server names
// (byte ranges of the envelope, in order): POST /upload announces the envelope's exact size,
// PUT /upload/<id>/<n> sends piece n, GET /upload/<id> says how much the server holds.
//
// A piece is kept in memory until the server has acknowledged it. When a request fails (a Tor
// circuit dropped, a timeout), the uploader waits, asks the server how far it got and goes on
// from there: the pieces already acknowledged are never sent again. The server holds only
// ciphertext, and forgets a partial upload nobody adds to within an hour.
//
// Two answers are not retried: 503 "server full" (too many uploads in progress: the page then
// sends the report without JavaScript, see blagh.mjs) and 507 "disk full" (below the server's
// free-space floor: the page shows the server's message and keeps the form as it is).

import { EnvelopeSealer, attachmentHeader, envelopeSize } from "./sealing.mjs";

const READ_BYTES = 1024 * 1024;
const MAX_ATTEMPTS = 8;
const FIRST_WAIT_MS = 500;
const LONGEST_WAIT_MS = 15000;

/**
 * An upload that cannot go on: `permanent` when trying again cannot help; `serverFull` when the
 * server has no room for one more upload; `diskFull` (with the server's `message`, in the
 * reporter's language) when it is short of disk space.
 */
export class UploadFailed extends Error {
  constructor(reason, permanent = false, details = {}) {
    super(reason);
    this.name = "UploadFailed";
    this.permanent = permanent;
    this.serverFull = details.serverFull === true;
    this.diskFull = details.diskFull === true;
    this.serverMessage = typeof details.message === "string" ? details.message : "";
  }
}

/** The refusals that no retry can help with, as an UploadFailed; null for any other answer. */
async function refusal(response, what) {
  if (response.status !== 503 && response.status !== 507) return null;
  let answer = {};
  try {
    answer = await response.json();
  } catch {
    return null; // not our JSON (a proxy's page): a passing failure, try again
  }
  if (answer.error === "server full") return new UploadFailed(`${what}: server full`, true, { serverFull: true });
  if (answer.error === "disk full") {
    return new UploadFailed(`${what}: disk full`, true, { diskFull: true, message: answer.message });
  }
  return null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Bytes of ciphertext waiting to be cut into pieces. */
class Outbox {
  constructor() {
    this.parts = [];
    this.length = 0;
  }

  push(parts) {
    for (const part of parts) {
      if (part.length > 0) {
        this.parts.push(part);
        this.length += part.length;
      }
    }
  }

  take(size) {
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const part = this.parts[0];
      const count = Math.min(part.length, size - at);
      out.set(part.subarray(0, count), at);
      at += count;
      if (count === part.length) this.parts.shift();
      else this.parts[0] = part.subarray(count);
    }
    this.length -= size;
    return out;
  }
}

/**
 * Seal `file` to `recipients` and upload it; resolves to the upload id to name in the form.
 *
 * options.formToken(): the anti-forgery token; options.onProgress(sent, total) after each
 * acknowledged piece; options.onRetry(attempt) when a piece is being tried again.
 */
export async function uploadFile(file, recipients, options) {
  const head = attachmentHeader(file.name, file.type);
  const size = envelopeSize(head.length + file.size, recipients.length);
  const { id, chunk_size: pieceSize } = await start(size, options);
  const sealer = new EnvelopeSealer(recipients);
  const outbox = new Outbox();
  let index = 0;
  let sent = 0;
  const flush = async (all) => {
    while (outbox.length >= pieceSize || (all && outbox.length > 0)) {
      const piece = outbox.take(Math.min(pieceSize, outbox.length));
      await sendPiece(id, index, piece, options);
      index += 1;
      sent += piece.length;
      options.onProgress?.(sent, size);
    }
  };
  outbox.push([sealer.header()]);
  outbox.push(sealer.update(head));
  for (let at = 0; at < file.size; at += READ_BYTES) {
    const slice = new Uint8Array(await file.slice(at, at + READ_BYTES).arrayBuffer());
    outbox.push(sealer.update(slice));
    await flush(false);
  }
  outbox.push(sealer.finish());
  await flush(true);
  if (sent !== size) throw new UploadFailed("size mismatch", true);
  return id;
}

async function start(size, options) {
  const body = new FormData();
  body.append("form_token", options.formToken());
  body.append("size", String(size));
  for (let attempt = 1; ; attempt++) {
    let response = null;
    try {
      response = await fetch("/upload", { method: "POST", body, credentials: "same-origin" });
    } catch {
      // the network: try again below
    }
    if (response !== null && response.ok) return response.json();
    if (response !== null && response.status < 500) throw new UploadFailed(`start: ${response.status}`, true);
    const refused = response === null ? null : await refusal(response, "start");
    if (refused !== null) throw refused;
    if (attempt >= MAX_ATTEMPTS) throw new UploadFailed("start: no connection");
    options.onRetry?.(attempt);
    await sleep(wait(attempt));
  }
}

function wait(attempt) {
  return Math.min(LONGEST_WAIT_MS, FIRST_WAIT_MS * 2 ** (attempt - 1));
}

/** Send piece `index`; after a failure, ask the server where it is and go on from there. */
async function sendPiece(id, index, piece, options) {
  for (let attempt = 1; ; attempt++) {
    let response = null;
    try {
      response = await fetch(`/upload/${id}/${index}`, {
        method: "PUT",
        body: piece,
        headers: { "Content-Type": "application/octet-stream", "X-Blagh-Form": options.formToken() },
        credentials: "same-origin",
      });
    } catch {
      // the connection dropped: find out below what the server has
    }
    if (response !== null && response.ok) return;
    if (response !== null && response.status !== 409 && response.status < 500) {
      throw new UploadFailed(`piece ${index}: ${response.status}`, true);
    }
    const refused = response === null ? null : await refusal(response, `piece ${index}`);
    if (refused !== null) throw refused;
    if (attempt >= MAX_ATTEMPTS) throw new UploadFailed(`piece ${index}: no connection`);
    options.onRetry?.(attempt);
    await sleep(wait(attempt));
    const state = await serverState(id);
    if (state === null) continue; // still no connection: try the piece again anyway
    if (state.next > index) return; // it arrived; only its answer was lost
    if (state.next < index) throw new UploadFailed("the server lost pieces", true);
  }
}

async function serverState(id) {
  try {
    const response = await fetch(`/upload/${id}`, { credentials: "same-origin" });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}
