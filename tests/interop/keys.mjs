// Codenames, analyst key files and signed manifests (docs/keys.md, version 1) on libsodium.js:
// written from the spec, independently of crypto/codename.py, crypto/keys.py and
// crypto/manifest.py, and used by check.mjs to check the vectors under tests/vectors/.

import { createHash } from "node:crypto";

import sodium from "libsodium-wrappers-sumo";

const utf8 = new TextEncoder();

function fromHex(hex) {
  if (typeof hex !== "string" || !/^([0-9a-f]{2})*$/.test(hex)) throw new Error(`not lowercase hex: ${hex}`);
  return Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
}

function toHex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function argon2id(outLength, password, salt, opslimit, memlimit) {
  return sodium.crypto_pwhash(outLength, password, salt, opslimit, memlimit, sodium.crypto_pwhash_ALG_ARGON2ID13);
}

// --- Codenames -----------------------------------------------------------------------------

export const WORD_COUNT = 7;
export const MAX_INPUT_CHARS = 256;
export const CODENAME_OPSLIMIT = 3;
export const CODENAME_MEMLIMIT = 64 * 1024 * 1024;
const LOGIN_PERSON = utf8.encode("blagh-login-v1\x00\x00");

// "whitespace (characters for which Python's str.isspace() is true)": not JavaScript's \s,
// which lacks U+001C–U+001F and U+0085 and adds U+FEFF.
const PY_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

export class InvalidCodename extends Error {}

/**
 * Normalise a typed codename: cap the length in code points first, NFKC, case fold, split on
 * whitespace, exactly 7 words joined by single spaces. JavaScript has no casefold: toLowerCase
 * agrees with it on list words, and the spec asks a browser to refuse non-list words anyway.
 */
export function normaliseCodename(text) {
  if ([...text].length > MAX_INPUT_CHARS) throw new InvalidCodename("too long");
  const words = text.normalize("NFKC").toLowerCase().split(PY_SPACE).filter((w) => w.length > 0);
  if (words.length !== WORD_COUNT) throw new InvalidCodename("not 7 words");
  return words.join(" ");
}

const derivations = new Map(); // the same (codename, salt) in several vectors: derive once

export function deriveCodename(text, instanceSalt) {
  const normalised = normaliseCodename(text);
  if (instanceSalt.length !== 16) throw new RangeError("the instance salt is 16 bytes");
  const cacheKey = `${normalised}\n${toHex(instanceSalt)}`;
  if (!derivations.has(cacheKey)) {
    const out = argon2id(64, utf8.encode(normalised), instanceSalt, CODENAME_OPSLIMIT, CODENAME_MEMLIMIT);
    const { publicKey, privateKey } = sodium.crypto_box_seed_keypair(out.subarray(0, 32));
    derivations.set(cacheKey, { normalised, publicKey, secretKey: privateKey, loginSecret: out.slice(32, 64) });
  }
  return derivations.get(cacheKey);
}

/**
 * blake2b(32, login_secret, key = hash_key, person = "blagh-login-v1\0\0").
 *
 * libsodium.js's crypto_generichash_blake2b_salt_personal(subkey_len, key, id, ctx) takes no
 * message (it hashes the empty string: it is meant as a KDF), so the verifier cannot be made
 * with the wrapper API. Only the server computes verifiers; here the underlying C function is
 * called on the WebAssembly module directly.
 */
export function loginVerifier(loginSecret, hashKey) {
  const lib = sodium.libsodium;
  const sizes = [32, loginSecret.length, hashKey.length, LOGIN_PERSON.length];
  const [out, msg, key, person] = sizes.map((n) => lib._malloc(n));
  try {
    lib.HEAPU8.set(loginSecret, msg);
    lib.HEAPU8.set(hashKey, key);
    lib.HEAPU8.set(LOGIN_PERSON, person);
    // (out, outlen, in, inlen as two 32-bit halves, key, keylen, salt = NULL, personal)
    const rc = lib._crypto_generichash_blake2b_salt_personal(
      out, 32, msg, loginSecret.length, 0, key, hashKey.length, 0, person,
    );
    if (rc !== 0) throw new Error("crypto_generichash_blake2b_salt_personal failed");
    return lib.HEAPU8.slice(out, out + 32);
  } finally {
    for (const p of [out, msg, key, person]) lib._free(p);
  }
}

export function checkCodenameVector(v) {
  let keys = null;
  try {
    keys = deriveCodename(v.codename_input, fromHex(v.salt));
  } catch (e) {
    if (!(e instanceof InvalidCodename)) throw e;
  }
  if (v.expect === "failure") return keys ? "expected the codename to be refused" : null;
  if (!keys) return "codename refused";
  if (keys.normalised !== v.normalised) return `normalised ${JSON.stringify(keys.normalised)}`;
  if (toHex(keys.publicKey) !== v.public_key) return "public key mismatch";
  if (toHex(keys.secretKey) !== v.secret_key) return "secret key mismatch";
  if (toHex(keys.loginSecret) !== v.login_secret) return "login secret mismatch";
  if (v.hash_key && toHex(loginVerifier(keys.loginSecret, fromHex(v.hash_key))) !== v.verifier) {
    return "verifier mismatch";
  }
  return null;
}

// --- Public key lines and fingerprints ------------------------------------------------------

export const ANALYST_PREFIX = "blagh-analyst-v1:";
export const SERVER_PREFIX = "blagh-server-v1:";
const B32 = "abcdefghijklmnopqrstuvwxyz234567";

/** RFC 4648 base32, lowercase, no padding. */
export function base32(bytes) {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const b of bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += B32[(buffer << (5 - bits)) & 31];
  return out;
}

export function fingerprint(prefix, keyBytes) {
  const digest = createHash("sha256").update(concat(utf8.encode(prefix), keyBytes)).digest("hex");
  const head = digest.slice(0, 20).toUpperCase();
  return head.match(/.{4}/g).join("-");
}

// --- Analyst key file ----------------------------------------------------------------------

export const KEY_FILE_BYTES = 137;
const KEY_FILE_MAGIC = utf8.encode("BLAGHKEY");
const KEY_FILE_HEADER = 57;
const MIB = 1024 * 1024;

export class KeyFileError extends Error {
  constructor() {
    super("the key file could not be opened");
  }
}

/** Open a key file: returns { encryptionSk, signingSeed }, or throws KeyFileError. */
export function openKeyFile(data, passphrase) {
  try {
    if (data.length !== KEY_FILE_BYTES || passphrase.length === 0) throw new KeyFileError();
    if (!equalBytes(data.subarray(0, 8), KEY_FILE_MAGIC) || data[8] !== 0x01) throw new KeyFileError();
    const view = new DataView(data.buffer, data.byteOffset, data.length);
    const opslimit = view.getUint32(9, true);
    const memlimit = view.getUint32(13, true);
    // Bounds before argon2id: the header is not authenticated yet.
    if (opslimit < 1 || opslimit > 10 || memlimit < 8 * MIB || memlimit > 1024 * MIB) throw new KeyFileError();
    const header = data.subarray(0, KEY_FILE_HEADER);
    const salt = data.subarray(17, 33);
    const nonce = data.subarray(33, 57);
    const stretched = argon2id(32, utf8.encode(passphrase.normalize("NFC")), salt, opslimit, memlimit);
    const boxKey = sodium.crypto_generichash(32, header, stretched);
    const plain = sodium.crypto_secretbox_open_easy(data.subarray(KEY_FILE_HEADER), nonce, boxKey);
    if (!(plain instanceof Uint8Array) || plain.length !== 64) throw new KeyFileError();
    return { encryptionSk: plain.slice(0, 32), signingSeed: plain.slice(32, 64) };
  } catch {
    throw new KeyFileError();
  }
}

export function checkKeyFileVector(v) {
  let key = null;
  try {
    key = openKeyFile(fromHex(v.key_file), v.passphrase);
  } catch (e) {
    if (!(e instanceof KeyFileError)) throw e;
  }
  if (v.expect === "failure") return key ? "expected KeyFileError, key file opened" : null;
  if (!key) return "key file did not open";
  if (toHex(key.encryptionSk) !== v.encryption_sk) return "encryption secret key mismatch";
  if (toHex(key.signingSeed) !== v.signing_seed) return "signing seed mismatch";
  const encryptionPk = sodium.crypto_scalarmult_base(key.encryptionSk);
  const verifyPk = sodium.crypto_sign_seed_keypair(key.signingSeed).publicKey;
  if (toHex(encryptionPk) !== v.encryption_pk) return "encryption public key mismatch";
  if (toHex(verifyPk) !== v.verify_pk) return "verify key mismatch";
  const raw = concat(encryptionPk, verifyPk);
  if (ANALYST_PREFIX + base32(raw) !== v.line) return `line mismatch: ${ANALYST_PREFIX + base32(raw)}`;
  if (fingerprint(ANALYST_PREFIX, raw) !== v.fingerprint) return "fingerprint mismatch";
  return null;
}

// --- Signed manifests ----------------------------------------------------------------------

const MANIFEST_MAGIC = utf8.encode("BLAGHMAN");
const MANIFEST_DOMAIN = utf8.encode("blagh-manifest-v1\x00");
const MANIFEST_HEADER = 8 + 1 + 32 + 64; // 105
// "nesting is at most 64 deep". Read as: a value sits inside at most 64 arrays or objects,
// the top-level object's members being inside one. So the top-level object may hold 64 more
// levels of containers (65 in all). That is crypto/manifest.py's reading; counting the
// top-level object as the first of 64 levels is the other one, and the spec does not say.
const MAX_DEPTH = 64;

export class BadSignature extends Error {
  constructor() {
    super("the manifest is not validly signed by a trusted key");
  }
}

function compareCodePoints(a, b) {
  // Unicode code point order, not JavaScript's UTF-16 code unit order.
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

const SHORT_ESCAPES = { '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f" };

function encodeString(s) {
  if (!s.isWellFormed()) throw new TypeError("lone surrogate");
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0);
    if (ch in SHORT_ESCAPES) out += SHORT_ESCAPES[ch];
    else if (code < 0x20) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/**
 * The canonical JSON text of a value; throws TypeError for anything the spec refuses.
 * `depth` is how many containers hold `value`: 0 for the top-level object.
 */
export function canonicalJson(value, depth = 0) {
  if (depth > MAX_DEPTH) throw new TypeError("nested too deep");
  if (value === null) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (typeof value === "string") return encodeString(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new TypeError("not an integer in the safe range");
    return Object.is(value, -0) ? "0" : String(value);
  }
  if (Array.isArray(value)) return `[${value.map((x) => canonicalJson(x, depth + 1)).join(",")}]`;
  if (typeof value === "object") {
    const keys = Object.keys(value).sort(compareCodePoints);
    return `{${keys.map((k) => `${encodeString(k)}:${canonicalJson(value[k], depth + 1)}`).join(",")}}`;
  }
  throw new TypeError(`no ${typeof value} in a manifest`);
}

/** Verify a signed manifest against trusted Ed25519 keys; returns { manifest, signer }. */
export function verifyManifest(signed, trusted) {
  try {
    if (signed.length < MANIFEST_HEADER) throw new BadSignature();
    if (!equalBytes(signed.subarray(0, 8), MANIFEST_MAGIC) || signed[8] !== 0x01) throw new BadSignature();
    const signer = signed.subarray(9, 41);
    const signature = signed.subarray(41, 105);
    const body = signed.subarray(105);
    if (!trusted.some((k) => equalBytes(k, signer))) throw new BadSignature();
    const message = concat(MANIFEST_DOMAIN, signer, body);
    if (!sodium.crypto_sign_verify_detached(signature, message, signer)) throw new BadSignature();
    // Only now, bytes a trusted key signed: strict UTF-8, keep a BOM (it is then not JSON).
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body);
    const manifest = JSON.parse(text);
    if (manifest === null || typeof manifest !== "object" || Array.isArray(manifest)) throw new BadSignature();
    if (!equalBytes(utf8.encode(canonicalJson(manifest)), body)) throw new BadSignature();
    return { manifest, signer: signer.slice() };
  } catch {
    throw new BadSignature();
  }
}

export function checkManifestVector(v) {
  let result = null;
  try {
    result = verifyManifest(new Uint8Array(Buffer.from(v.signed, "base64")), v.trusted.map(fromHex));
  } catch (e) {
    if (!(e instanceof BadSignature)) throw e;
  }
  if (v.expect === "failure") return result ? "expected BadSignature, manifest verified" : null;
  if (!result) return "manifest did not verify";
  if (toHex(result.signer) !== v.signer) return "signer mismatch";
  if (canonicalJson(result.manifest) !== canonicalJson(v.manifest)) return "manifest content mismatch";
  return null;
}
