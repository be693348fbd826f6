// Blagh's cryptography in the reporter's browser, on libsodium.js (WebAssembly):
//
//   * the envelope, exactly as docs/envelope.md says (sealing, streaming; opening, for replies);
//   * codenames, as docs/keys.md says (normalising, checking, generating, deriving keys);
//   * what goes inside envelopes, as docs/payloads.md says (documents, attachment headers).
//
// Written to be read: no build step, no minifier, no dependency but libsodium.js (copied from
// node_modules at set-up and loaded with subresource integrity, see docs/js-path.md). The same
// envelope logic, written independently for node, is tests/interop/envelope.mjs; the Python
// implementation is crypto/envelope.py. tests/test_browser.py checks that the three agree.

import sodium from "../vendor/libsodium-wrappers.mjs";

// --- Constants (docs/envelope.md, docs/keys.md) ----------------------------------------------

export const MAGIC = new TextEncoder().encode("BLAGHENV");
export const VERSION = 0x01;
export const MAX_RECIPIENTS = 32;
export const C = 65536; // plaintext chunk size
export const KEY_BYTES = 32;
export const STANZA_BYTES = 32 + 48; // crypto_box_seal of a 32-byte file key
export const STREAM_HEADER_BYTES = 24;
export const CHUNK_OVERHEAD = 17;
export const SEALED_CHUNK = C + CHUNK_OVERHEAD;
export const PREAMBLE_BYTES = MAGIC.length + 2;
export const MARKER = 0x80;
export const MIN_PADDED = 512;

const TAG_MESSAGE = 0;
const TAG_PUSH = 1;
const TAG_REKEY = 2;
const TAG_FINAL = 3;

export const WORD_COUNT = 7;
export const MAX_CODENAME_CHARS = 256;
export const ARGON2_OPSLIMIT = 3;
export const ARGON2_MEMLIMIT = 64 * 1024 * 1024;
export const SALT_BYTES = 16;

/** One error, one message, for every way opening an envelope can fail. */
export class DecryptionError extends Error {
  constructor() {
    super("the envelope could not be opened");
    this.name = "DecryptionError";
  }
}

let isReady = false;

/** Wait for libsodium.js, and check its constants are the ones the formats assume. */
export async function ready() {
  await sodium.ready;
  if (!isReady) {
    const expected = {
      crypto_box_SEALBYTES: 48,
      crypto_box_PUBLICKEYBYTES: KEY_BYTES,
      crypto_secretstream_xchacha20poly1305_HEADERBYTES: STREAM_HEADER_BYTES,
      crypto_secretstream_xchacha20poly1305_ABYTES: CHUNK_OVERHEAD,
      crypto_secretstream_xchacha20poly1305_TAG_MESSAGE: TAG_MESSAGE,
      crypto_secretstream_xchacha20poly1305_TAG_PUSH: TAG_PUSH,
      crypto_secretstream_xchacha20poly1305_TAG_REKEY: TAG_REKEY,
      crypto_secretstream_xchacha20poly1305_TAG_FINAL: TAG_FINAL,
    };
    for (const [name, value] of Object.entries(expected)) {
      if (sodium[name] !== value) throw new Error(`libsodium.js: ${name} is not ${value}`);
    }
    isReady = true;
  }
}

// --- Bytes -----------------------------------------------------------------------------------

export function concat(parts) {
  let size = 0;
  for (const part of parts) size += part.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function toBase64(bytes) {
  return sodium.to_base64(bytes, sodium.base64_variants.ORIGINAL);
}

export function fromBase64(text) {
  return sodium.from_base64(text, sodium.base64_variants.ORIGINAL);
}

export function fromHex(text) {
  return sodium.from_hex(text);
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function allZero(bytes) {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

// --- Padding ---------------------------------------------------------------------------------

function bitLength(n) {
  let bits = 0;
  while (n > 0) {
    n = Math.floor(n / 2); // exact for any safe integer, unlike 32-bit shifts
    bits += 1;
  }
  return bits;
}

/** Padmé (Nikitin et al., PETS 2019), for n >= 1. */
export function padme(n) {
  const e = bitLength(n) - 1;
  const s = bitLength(e);
  const unit = 2 ** (e - s);
  return Math.ceil(n / unit) * unit;
}

/** P = padme(max(L + 1, 512)): the padded length of L bytes of data. */
export function paddedLength(L) {
  return padme(Math.max(L + 1, MIN_PADDED));
}

/** The exact size of an envelope holding L bytes for N recipients. */
export function envelopeSize(L, N) {
  const P = paddedLength(L);
  return PREAMBLE_BYTES + STANZA_BYTES * N + STREAM_HEADER_BYTES + P + CHUNK_OVERHEAD * Math.ceil(P / C);
}

// --- Sealing ---------------------------------------------------------------------------------

function checkRecipients(recipients) {
  if (!Array.isArray(recipients) || recipients.length < 1 || recipients.length > MAX_RECIPIENTS) {
    throw new RangeError(`an envelope needs 1 to ${MAX_RECIPIENTS} recipients`);
  }
  const seen = new Set();
  for (const key of recipients) {
    if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) {
      throw new TypeError("every recipient is a 32-byte X25519 public key");
    }
    const hex = sodium.to_hex(key);
    if (seen.has(hex)) throw new RangeError("the same recipient is listed twice");
    seen.add(hex);
  }
}

/**
 * Seals a stream of plaintext to fixed recipients, holding at most one chunk of it.
 *
 * header() first, then update(bytes) any number of times, then finish() once. update() and
 * finish() return the ciphertext they produced as a list of byte arrays (possibly empty).
 */
export class EnvelopeSealer {
  constructor(recipients) {
    if (!isReady) throw new Error("await ready() first");
    checkRecipients(recipients);
    const fileKey = sodium.randombytes_buf(32);
    const stanzas = recipients.map((key) => sodium.crypto_box_seal(fileKey, key));
    const { state, header } = sodium.crypto_secretstream_xchacha20poly1305_init_push(fileKey);
    sodium.memzero(fileKey);
    this.state = state;
    this.headerBytes = concat([MAGIC, Uint8Array.of(VERSION, recipients.length), ...stanzas, header]);
    this.ad = this.headerBytes; // ad_0 is the whole header; later chunks have none
    this.pending = new Uint8Array(C);
    this.fill = 0; // bytes of plaintext waiting in `pending`
    this.length = 0; // L so far
    this.finished = false;
  }

  header() {
    return this.headerBytes;
  }

  _push(chunk, tag) {
    const ad = this.ad;
    this.ad = null;
    return sodium.crypto_secretstream_xchacha20poly1305_push(this.state, chunk, ad, tag);
  }

  /** Each complete run of C data bytes becomes a MESSAGE chunk. */
  update(data) {
    if (this.finished) throw new Error("update() after finish()");
    this.length += data.length;
    const out = [];
    let at = 0;
    if (this.fill > 0) {
      at = Math.min(C - this.fill, data.length);
      this.pending.set(data.subarray(0, at), this.fill);
      this.fill += at;
      if (this.fill < C) return out;
      out.push(this._push(this.pending, TAG_MESSAGE));
      this.fill = 0;
    }
    while (data.length - at >= C) {
      out.push(this._push(data.subarray(at, at + C), TAG_MESSAGE));
      at += C;
    }
    this.pending.set(data.subarray(at), 0);
    this.fill = data.length - at;
    return out;
  }

  /** The marker, zeros up to P, then the boundary chunk and any padding chunks. */
  finish() {
    if (this.finished) throw new Error("finish() called twice");
    this.finished = true;
    let remaining = paddedLength(this.length) - (this.length - this.fill);
    const boundary = new Uint8Array(Math.min(remaining, C));
    boundary.set(this.pending.subarray(0, this.fill), 0);
    boundary[this.fill] = MARKER;
    this.pending.fill(0);
    remaining -= boundary.length;
    const out = [this._push(boundary, remaining > 0 ? TAG_PUSH : TAG_FINAL)];
    while (remaining > 0) {
      const size = Math.min(remaining, C);
      remaining -= size;
      out.push(this._push(new Uint8Array(size), remaining > 0 ? TAG_MESSAGE : TAG_FINAL));
    }
    return out;
  }
}

/** Seal a whole byte array (documents: a report's fields, a message). */
export function sealBytes(data, recipients) {
  const sealer = new EnvelopeSealer(recipients);
  return concat([sealer.header(), ...sealer.update(data), ...sealer.finish()]);
}

// --- Opening (replies and the source's own items, in the follow-up page) --------------------

/**
 * Open a whole envelope with one or more X25519 secret keys, performing every check of
 * docs/envelope.md ("Opening"); any failure throws DecryptionError.
 */
export function openBytes(envelope, identities) {
  try {
    return openUnchecked(envelope, identities);
  } catch {
    throw new DecryptionError();
  }
}

function openUnchecked(envelope, identities) {
  // Check 1: magic, version, 1 <= count <= 32, complete header.
  if (envelope.length < PREAMBLE_BYTES) throw new DecryptionError();
  if (!equalBytes(envelope.subarray(0, MAGIC.length), MAGIC)) throw new DecryptionError();
  if (envelope[MAGIC.length] !== VERSION) throw new DecryptionError();
  const count = envelope[MAGIC.length + 1];
  if (count < 1 || count > MAX_RECIPIENTS) throw new DecryptionError();
  const headerSize = PREAMBLE_BYTES + STANZA_BYTES * count + STREAM_HEADER_BYTES;
  if (envelope.length < headerSize) throw new DecryptionError();
  const header = envelope.subarray(0, headerSize);

  // Check 2: the stanzas in order, each with every identity; the first that opens wins.
  let fileKey = null;
  for (let i = 0; i < count && fileKey === null; i++) {
    const stanza = header.subarray(PREAMBLE_BYTES + STANZA_BYTES * i, PREAMBLE_BYTES + STANZA_BYTES * (i + 1));
    for (const secretKey of identities) {
      try {
        const publicKey = sodium.crypto_scalarmult_base(secretKey);
        const opened = sodium.crypto_box_seal_open(stanza, publicKey, secretKey);
        if (opened instanceof Uint8Array && opened.length === 32) {
          fileKey = opened;
          break;
        }
      } catch {
        // not this identity
      }
    }
  }
  if (fileKey === null) throw new DecryptionError();

  // Check 3: the stream opens under the file key.
  const state = sodium.crypto_secretstream_xchacha20poly1305_init_pull(
    header.subarray(headerSize - STREAM_HEADER_BYTES),
    fileKey,
  );
  sodium.memzero(fileKey);

  // Checks 4 to 7: chunks, tags, marker and padding, nothing after FINAL, canonical length.
  const out = [];
  let dataLength = 0;
  let padded = 0;
  let phase = "data";
  let at = headerSize;
  let ad = header;
  while (at < envelope.length) {
    if (phase === "done") throw new DecryptionError();
    const end = Math.min(at + SEALED_CHUNK, envelope.length);
    if (end - at < CHUNK_OVERHEAD + 1) throw new DecryptionError();
    const result = sodium.crypto_secretstream_xchacha20poly1305_pull(state, envelope.subarray(at, end), ad);
    ad = null;
    at = end;
    if (!result || !(result.message instanceof Uint8Array)) throw new DecryptionError();
    const { message, tag } = result;
    padded += message.length;
    if (phase === "padding") {
      if ((tag !== TAG_MESSAGE && tag !== TAG_FINAL) || !allZero(message)) throw new DecryptionError();
      if (tag === TAG_FINAL) phase = "done";
      continue;
    }
    if (tag === TAG_MESSAGE) {
      if (message.length !== C) throw new DecryptionError();
      dataLength += C;
      out.push(message);
      continue;
    }
    if (tag !== TAG_PUSH && tag !== TAG_FINAL) throw new DecryptionError();
    if (tag === TAG_PUSH && message.length !== C) throw new DecryptionError();
    let stop = message.length;
    while (stop > 0 && message[stop - 1] === 0) stop -= 1;
    if (stop === 0 || message[stop - 1] !== MARKER) throw new DecryptionError();
    out.push(message.subarray(0, stop - 1));
    dataLength += stop - 1;
    phase = tag === TAG_FINAL ? "done" : "padding";
  }
  if (phase !== "done" || padded !== paddedLength(dataLength)) throw new DecryptionError();
  return concat(out);
}

// --- Payloads (docs/payloads.md) -------------------------------------------------------------

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A JSON document {"v": 1, "kind": kind, ...body}, compact UTF-8 (report, message). */
export function encodeDocument(kind, body) {
  return utf8.encode(JSON.stringify({ v: 1, kind, ...body }));
}

/** The document inside an opened envelope; throws unless its version and kind are expected. */
export function decodeDocument(bytes, kind) {
  const document = JSON.parse(fromUtf8.decode(bytes));
  if (document === null || typeof document !== "object" || document.v !== 1 || document.kind !== kind) {
    throw new Error(`not a version 1 ${kind} document`);
  }
  return document;
}

// JSON as Python's json.dumps(ensure_ascii=True) writes it: every non-ASCII code unit escaped.
function asciiJson(text) {
  return JSON.stringify(text).replace(
    /[\u0080-\uffff]/g,
    (char) => "\\u" + char.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}

export const MAX_FILENAME_CHARS = 255;
const DEFAULT_TYPE = "application/octet-stream";

/** A file's name as the server would keep it: its last 255 code points. */
export function attachmentName(name) {
  return Array.from(name).slice(-MAX_FILENAME_CHARS).join("");
}

/** The declared type if plausible (printable ASCII, at most 255 characters), as the server does. */
export function declaredType(type) {
  return type.length > 0 && type.length <= 255 && /^[\x20-\x7e]+$/.test(type) ? type : DEFAULT_TYPE;
}

/** The first line of an attachment's plaintext: its name and declared type, then "\n". */
export function attachmentHeader(name, type) {
  const line = `{"v": 1, "name": ${asciiJson(attachmentName(name))}, "type": ${asciiJson(declaredType(type))}}\n`;
  return utf8.encode(line);
}

// --- Codenames (docs/keys.md) ----------------------------------------------------------------

/** Whitespace exactly as Python's str.isspace() sees it, so words split the same way. */
const WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

export class CodenameError extends Error {
  constructor(reason, words = []) {
    super(reason);
    this.name = "CodenameError";
    this.reason = reason; // "too-long", "unknown-words" or "word-count"
    this.words = words;
  }
}

/**
 * The words of a typed codename: capped length first, then NFKC and lower case, split on
 * whitespace. JavaScript has no casefold: on input whose words are all list words this agrees
 * with Python's casefold, and the caller must refuse any other input (checkCodename does).
 */
export function codenameWords(text) {
  if (Array.from(text).length > MAX_CODENAME_CHARS) throw new CodenameError("too-long");
  return text.normalize("NFKC").toLowerCase().split(WHITESPACE).filter((word) => word.length > 0);
}

/** The normalised codename, or a CodenameError saying what is wrong with the typed text. */
export function checkCodename(text, wordSet) {
  const words = codenameWords(text);
  const unknown = words.filter((word) => !wordSet.has(word));
  if (unknown.length > 0) throw new CodenameError("unknown-words", unknown);
  if (words.length !== WORD_COUNT) throw new CodenameError("word-count");
  return words.join(" ");
}

/** The fewest words a codename may be drawn from, as crypto/codename.py's MIN_WORDLIST_SIZE. */
const MIN_WORDLIST_SIZE = 7000;

/**
 * The served word list (one word a line): the words codenames are drawn from, an empty line,
 * then the retired words, still accepted when typed back. Returns { drawn, accepted }.
 */
export function parseWordList(text) {
  const [drawnPart, retiredPart = ""] = text.split("\n\n");
  const lines = (part) => part.split("\n").filter((word) => word.length > 0);
  const drawn = lines(drawnPart);
  return { drawn, accepted: new Set([...drawn, ...lines(retiredPart)]) };
}

/** A fresh codename: seven words drawn uniformly (rejection sampling, no modulo bias). */
export function generateCodename(wordList) {
  if (wordList.length < MIN_WORDLIST_SIZE || new Set(wordList).size !== wordList.length) {
    throw new Error("bad word list");
  }
  const limit = Math.floor(2 ** 32 / wordList.length) * wordList.length;
  const words = [];
  const draw = new Uint32Array(1);
  while (words.length < WORD_COUNT) {
    crypto.getRandomValues(draw);
    if (draw[0] < limit) words.push(wordList[draw[0] % wordList.length]);
  }
  return words.join(" ");
}

/**
 * argon2id(codename, instance salt) -> the source's X25519 key pair and its login secret.
 * About a second and 64 MiB: call it after telling the reporter something is happening.
 */
export function deriveSourceKeys(normalisedCodename, saltHex) {
  const salt = fromHex(saltHex);
  if (salt.length !== SALT_BYTES) throw new Error("the instance salt is 16 bytes");
  const out = sodium.crypto_pwhash(
    64,
    utf8.encode(normalisedCodename),
    salt,
    ARGON2_OPSLIMIT,
    ARGON2_MEMLIMIT,
    sodium.crypto_pwhash_ALG_ARGON2ID13,
  );
  const pair = sodium.crypto_box_seed_keypair(out.subarray(0, 32));
  const keys = { publicKey: pair.publicKey, secretKey: pair.privateKey, loginSecret: out.slice(32, 64) };
  sodium.memzero(out);
  return keys;
}

/** The public key of an X25519 secret key. */
export function publicKeyOf(secretKey) {
  return sodium.crypto_scalarmult_base(secretKey);
}

export function sameKey(a, b) {
  return equalBytes(a, b);
}
