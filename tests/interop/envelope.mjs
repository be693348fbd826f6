// The Blagh envelope, version 1, on libsodium.js: an independent implementation written from
// docs/envelope.md (not from crypto/envelope.py), used to check the Python one and the vectors.
//
//   import { ready, EnvelopeSealer, EnvelopeOpener, DecryptionError } from "./envelope.mjs";
//   await ready();
//
// Both directions stream: the sealer holds at most one chunk (C bytes) of plaintext and the
// opener at most one sealed chunk (C + 17 bytes) of ciphertext, whatever the envelope's size.

import sodium from "libsodium-wrappers-sumo";

export const MAGIC = new TextEncoder().encode("BLAGHENV");
export const VERSION = 0x01;
export const MAX_RECIPIENTS = 32;
export const C = 65536;
export const KEY_BYTES = 32;
export const FILE_KEY_BYTES = 32;
export const SEAL_OVERHEAD = 48; // crypto_box_SEALBYTES
export const STANZA_BYTES = FILE_KEY_BYTES + SEAL_OVERHEAD; // 80
export const STREAM_HEADER_BYTES = 24;
export const CHUNK_OVERHEAD = 17; // crypto_secretstream_xchacha20poly1305_ABYTES
export const SEALED_CHUNK = C + CHUNK_OVERHEAD;
export const PREAMBLE_BYTES = MAGIC.length + 2;
export const MARKER = 0x80;
export const MIN_PADDED = 512;

export const TAG_MESSAGE = 0;
export const TAG_PUSH = 1;
export const TAG_REKEY = 2;
export const TAG_FINAL = 3;

/** One error, one message, for every way opening can fail. */
export class DecryptionError extends Error {
  constructor() {
    super("the envelope could not be opened");
    this.name = "DecryptionError";
  }
}

let isReady = false;

/** Wait for libsodium.js; check its constants match what the spec assumes. */
export async function ready() {
  await sodium.ready;
  if (!isReady) {
    const expected = {
      crypto_box_SEALBYTES: SEAL_OVERHEAD,
      crypto_box_PUBLICKEYBYTES: KEY_BYTES,
      crypto_box_SECRETKEYBYTES: KEY_BYTES,
      crypto_secretstream_xchacha20poly1305_HEADERBYTES: STREAM_HEADER_BYTES,
      crypto_secretstream_xchacha20poly1305_ABYTES: CHUNK_OVERHEAD,
      crypto_secretstream_xchacha20poly1305_KEYBYTES: FILE_KEY_BYTES,
      crypto_secretstream_xchacha20poly1305_TAG_MESSAGE: TAG_MESSAGE,
      crypto_secretstream_xchacha20poly1305_TAG_PUSH: TAG_PUSH,
      crypto_secretstream_xchacha20poly1305_TAG_REKEY: TAG_REKEY,
      crypto_secretstream_xchacha20poly1305_TAG_FINAL: TAG_FINAL,
    };
    for (const [name, value] of Object.entries(expected)) {
      if (sodium[name] !== value) throw new Error(`libsodium.js: ${name} is ${sodium[name]}, not ${value}`);
    }
    isReady = true;
  }
  return sodium;
}

function requireReady() {
  if (!isReady) throw new Error("call and await ready() first");
}

// --- Padding -------------------------------------------------------------------------------

function bitLength(n) {
  // Exact for any safe integer (no 32-bit bitwise operators).
  let bits = 0;
  while (n > 0) {
    n = Math.floor(n / 2);
    bits += 1;
  }
  return bits;
}

/** Padmé (Nikitin et al., PETS 2019), for n >= 1. */
export function padme(n) {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError("padme is defined for n >= 1");
  const e = bitLength(n) - 1;
  const s = bitLength(e);
  const unit = 2 ** (e - s); // mask + 1
  return Math.ceil(n / unit) * unit; // (n + mask) & ~mask, without 32-bit overflow
}

/** P = padme(max(L + 1, 512)). */
export function paddedLength(L) {
  if (!Number.isSafeInteger(L) || L < 0) throw new RangeError("length must be >= 0");
  return padme(Math.max(L + 1, MIN_PADDED));
}

/** 10 + 80·N + 24 + P + 17·ceil(P / C) */
export function envelopeSize(L, N) {
  const P = paddedLength(L);
  return PREAMBLE_BYTES + STANZA_BYTES * N + STREAM_HEADER_BYTES + P + CHUNK_OVERHEAD * Math.ceil(P / C);
}

// --- Byte helpers --------------------------------------------------------------------------

function concat(parts) {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function hexKey(k) {
  return Array.from(k, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A FIFO of byte pieces from which exact-size runs are taken without rebuilding the whole. */
class ByteQueue {
  constructor() {
    this.pieces = [];
    this.length = 0;
  }

  push(bytes) {
    if (bytes.length) {
      this.pieces.push(bytes);
      this.length += bytes.length;
    }
  }

  peek(n) {
    // The first n bytes (n <= length), without consuming them.
    const out = new Uint8Array(n);
    let at = 0;
    for (const p of this.pieces) {
      if (at === n) break;
      const take = Math.min(n - at, p.length);
      out.set(p.subarray(0, take), at);
      at += take;
    }
    return out;
  }

  take(n) {
    const out = this.peek(n);
    let left = n;
    while (left > 0) {
      const p = this.pieces[0];
      if (p.length <= left) {
        this.pieces.shift();
        left -= p.length;
      } else {
        this.pieces[0] = p.subarray(left);
        left = 0;
      }
    }
    this.length -= n;
    return out;
  }

  clear() {
    this.pieces = [];
    this.length = 0;
  }
}

// --- Sealing -------------------------------------------------------------------------------

function checkRecipients(recipients) {
  if (!Array.isArray(recipients) || recipients.length < 1 || recipients.length > MAX_RECIPIENTS) {
    throw new RangeError(`an envelope needs 1 to ${MAX_RECIPIENTS} recipients`);
  }
  const seen = new Set();
  for (const r of recipients) {
    if (!(r instanceof Uint8Array) || r.length !== KEY_BYTES) {
      throw new TypeError("every recipient must be a 32-byte X25519 public key");
    }
    const hex = hexKey(r);
    if (seen.has(hex)) throw new RangeError("the same recipient is listed twice");
    seen.add(hex);
  }
}

/**
 * Seals a stream of plaintext. `header()` first, then `update(data)` any number of times, then
 * `finish()` once; each returns the ciphertext produced so far (possibly empty).
 */
export class EnvelopeSealer {
  constructor(recipients) {
    requireReady();
    checkRecipients(recipients);
    // Sealing step 2: a fresh file key, the header.
    const fileKey = sodium.randombytes_buf(FILE_KEY_BYTES);
    const stanzas = recipients.map((r) => sodium.crypto_box_seal(fileKey, r));
    const { state, header: streamHeader } = sodium.crypto_secretstream_xchacha20poly1305_init_push(fileKey);
    sodium.memzero(fileKey);
    this.state = state;
    this.headerBytes = concat([MAGIC, Uint8Array.of(VERSION, recipients.length), ...stanzas, streamHeader]);
    this.ad = this.headerBytes; // ad_0 is the whole header; later chunks have none
    this.pending = new ByteQueue();
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

  /** Sealing step 3: each complete run of C data bytes becomes a MESSAGE chunk. */
  update(data) {
    if (this.finished) throw new Error("update() after finish()");
    this.pending.push(Uint8Array.from(data));
    this.length += data.length;
    const out = [];
    while (this.pending.length >= C) out.push(this._push(this.pending.take(C), TAG_MESSAGE));
    return concat(out);
  }

  /** Sealing step 4: marker, zeros up to P, boundary and padding chunks. */
  finish() {
    if (this.finished) throw new Error("finish() called twice");
    this.finished = true;
    const P = paddedLength(this.length);
    const sealedSoFar = this.length - this.pending.length; // a multiple of C
    let remaining = P - sealedSoFar; // plaintext bytes still to seal, >= pending + 1
    const out = [];
    // The boundary chunk: the pending data, the marker, zeros; at most C bytes.
    const boundarySize = Math.min(remaining, C);
    const boundary = new Uint8Array(boundarySize);
    const rest = this.pending.take(this.pending.length);
    boundary.set(rest, 0);
    boundary[rest.length] = MARKER;
    remaining -= boundarySize;
    out.push(this._push(boundary, remaining > 0 ? TAG_PUSH : TAG_FINAL));
    // Padding chunks: zeros, MESSAGE but the last, FINAL. Made one at a time.
    while (remaining > 0) {
      const size = Math.min(remaining, C);
      remaining -= size;
      out.push(this._push(new Uint8Array(size), remaining > 0 ? TAG_MESSAGE : TAG_FINAL));
    }
    return concat(out);
  }
}

/** Seal a whole byte array (convenience over EnvelopeSealer). */
export function sealBytes(data, recipients) {
  const s = new EnvelopeSealer(recipients);
  return concat([s.header(), s.update(data), s.finish()]);
}

// --- Opening -------------------------------------------------------------------------------

const HEADER = "header";
const DATA = "data"; // before the boundary chunk
const PADDING = "padding"; // after a PUSH boundary chunk, before FINAL
const DONE = "done"; // FINAL seen
const FAILED = "failed";

function isAllZero(bytes) {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Opens an envelope fed in pieces of any size. `update(ciphertext)` returns the plaintext
 * released so far (authentic but provisional); `finish()` returns the rest and is what says
 * the data is complete. Any failure throws DecryptionError and the opener stays failed.
 */
export class EnvelopeOpener {
  constructor(identities) {
    requireReady();
    if (!Array.isArray(identities) || identities.length < 1) {
      throw new TypeError("identities must be one or more 32-byte X25519 secret keys");
    }
    for (const sk of identities) {
      if (!(sk instanceof Uint8Array) || sk.length !== KEY_BYTES) {
        throw new TypeError("identities must be one or more 32-byte X25519 secret keys");
      }
    }
    this.identities = identities.map((sk) => ({ sk, pk: sodium.crypto_scalarmult_base(sk) }));
    this.queue = new ByteQueue();
    this.phase = HEADER;
    this.headerBytes = null;
    this.state = null;
    this.dataLength = 0; // L recovered so far
    this.paddedSoFar = 0; // sum of chunk plaintext lengths: P at the end
  }

  update(ciphertext) {
    return this._guard(() => {
      this.queue.push(Uint8Array.from(ciphertext));
      const out = [];
      if (this.phase === HEADER && !this._readHeader()) return new Uint8Array(0);
      // Check 4: a chunk is the next C + 17 bytes while more input may follow.
      while (this.queue.length >= SEALED_CHUNK) out.push(this._pull(this.queue.take(SEALED_CHUNK)));
      return concat(out);
    });
  }

  finish() {
    return this._guard(() => {
      if (this.phase === HEADER) throw new DecryptionError(); // check 1: header incomplete
      let out = new Uint8Array(0);
      if (this.queue.length > 0) {
        // Check 4: at the end of the input, the remaining 18 to C + 17 bytes.
        const last = this.queue.take(this.queue.length);
        if (last.length < CHUNK_OVERHEAD + 1) throw new DecryptionError();
        out = this._pull(last);
      }
      // Check 6: the input does not end before FINAL.
      if (this.phase !== DONE) throw new DecryptionError();
      // Check 7: the padded length is canonical.
      if (this.paddedSoFar !== paddedLength(this.dataLength)) throw new DecryptionError();
      return out;
    });
  }

  _guard(fn) {
    if (this.phase === FAILED) throw new DecryptionError();
    try {
      return fn();
    } catch {
      // Whatever went wrong (a check, libsodium.js throwing): one error, nothing kept.
      this.phase = FAILED;
      this.queue.clear();
      this.state = null;
      throw new DecryptionError();
    }
  }

  _readHeader() {
    // Check 1: magic, version, 1 <= count <= 32, complete header.
    if (this.queue.length < PREAMBLE_BYTES) return false;
    const pre = this.queue.peek(PREAMBLE_BYTES);
    if (!bytesEqual(pre.subarray(0, MAGIC.length), MAGIC)) throw new DecryptionError();
    if (pre[MAGIC.length] !== VERSION) throw new DecryptionError();
    const count = pre[MAGIC.length + 1];
    if (count < 1 || count > MAX_RECIPIENTS) throw new DecryptionError();
    const size = PREAMBLE_BYTES + STANZA_BYTES * count + STREAM_HEADER_BYTES;
    if (this.queue.length < size) return false;
    const header = this.queue.take(size);
    // Check 2: some stanza opens under some identity, giving a 32-byte file key.
    let fileKey = null;
    for (const { sk, pk } of this.identities) {
      for (let i = 0; i < count && fileKey === null; i++) {
        const at = PREAMBLE_BYTES + STANZA_BYTES * i;
        const stanza = header.subarray(at, at + STANZA_BYTES);
        try {
          const opened = sodium.crypto_box_seal_open(stanza, pk, sk);
          if (opened instanceof Uint8Array && opened.length === FILE_KEY_BYTES) fileKey = opened;
        } catch {
          // not for this identity
        }
      }
      if (fileKey !== null) break;
    }
    if (fileKey === null) throw new DecryptionError();
    // Check 3: ss_init_pull(stream_header, file_key).
    const streamHeader = header.subarray(size - STREAM_HEADER_BYTES);
    this.state = sodium.crypto_secretstream_xchacha20poly1305_init_pull(streamHeader, fileKey);
    sodium.memzero(fileKey);
    if (!this.state) throw new DecryptionError();
    this.headerBytes = header;
    this.phase = DATA;
    return true;
  }

  _pull(sealed) {
    if (this.phase === DONE) throw new DecryptionError(); // check 6: a byte after FINAL
    const ad = this.headerBytes; // ad_0 = header, then empty
    this.headerBytes = null;
    const result = sodium.crypto_secretstream_xchacha20poly1305_pull(this.state, sealed, ad);
    if (!result || !(result.message instanceof Uint8Array)) throw new DecryptionError();
    const { message: m, tag } = result;
    this.paddedSoFar += m.length;
    // Check 5: MESSAGE* (FINAL | PUSH MESSAGE* FINAL).
    if (this.phase === PADDING) {
      if (tag !== TAG_MESSAGE && tag !== TAG_FINAL) throw new DecryptionError();
      if (!isAllZero(m)) throw new DecryptionError();
      if (tag === TAG_FINAL) this.phase = DONE;
      return new Uint8Array(0);
    }
    // this.phase === DATA
    if (tag === TAG_MESSAGE) {
      if (m.length !== C) throw new DecryptionError();
      this.dataLength += m.length;
      return m;
    }
    if (tag !== TAG_PUSH && tag !== TAG_FINAL) throw new DecryptionError(); // REKEY, unknown
    if (tag === TAG_PUSH && m.length !== C) throw new DecryptionError();
    // The boundary chunk: strip trailing zeros, then the last byte must be the marker.
    let end = m.length;
    while (end > 0 && m[end - 1] === 0) end -= 1;
    if (end === 0 || m[end - 1] !== MARKER) throw new DecryptionError();
    const data = m.subarray(0, end - 1);
    this.dataLength += data.length;
    this.phase = tag === TAG_FINAL ? DONE : PADDING;
    return data;
  }
}

/** Open a whole byte array, fed in pieces of `step` bytes to exercise the streaming path. */
export function openBytes(envelope, identities, step = 8191) {
  const o = new EnvelopeOpener(identities);
  const out = [];
  for (let i = 0; i < envelope.length; i += step) out.push(o.update(envelope.subarray(i, i + step)));
  out.push(o.finish());
  return concat(out);
}
