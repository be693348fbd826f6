#!/usr/bin/env node
// The libsodium.js side of the interop check (run from the repository root).
//
//   node tests/interop/check.mjs vectors <dir>
//       Check every vector under <dir> (tests/vectors, or one of its subfolders: envelope/,
//       codename/, keyfile/, manifest/). One line per vector, then a summary; exit 1 on any
//       mismatch.
//   node tests/interop/check.mjs seal <recipient_hex>[,<recipient_hex>…] <in_file> <out_file> […]
//       Seal a file (streaming) to one or more recipients. More <in_file> <out_file> pairs
//       may follow (one node start-up for many files).
//   node tests/interop/check.mjs open <identity_hex>[,<identity_hex>…] <in_file> <out_file> […]
//       Open an envelope (streaming). The plaintext goes to a temporary file renamed to
//       <out_file> only once the envelope has opened completely; on failure nothing is left,
//       "DecryptionError <in_file>" is printed on stderr and the exit status is 2.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";

import * as env from "./envelope.mjs";
import * as keys from "./keys.mjs";

const READ_PIECE = 40_000; // deliberately not a multiple of the chunk size

function fromHex(hex) {
  if (typeof hex !== "string" || !/^([0-9a-f]{2})*$/.test(hex)) throw new Error(`not lowercase hex: ${hex}`);
  return Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
}

function toHex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

function sha256Hex(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

// --- vectors -------------------------------------------------------------------------------

function checkEnvelopeVector(v) {
  const identities = v.identities.map(fromHex);
  const sealed = Buffer.from(v.envelope, "base64");
  let opened = null;
  let error = null;
  try {
    opened = env.openBytes(new Uint8Array(sealed), identities);
  } catch (e) {
    if (!(e instanceof env.DecryptionError)) throw e;
    error = e;
  }
  if (v.expect === "success") {
    if (error) return "expected success, got DecryptionError";
    if (opened.length !== v.plaintext_size) return `size ${opened.length}, expected ${v.plaintext_size}`;
    if (sha256Hex(opened) !== v.plaintext_sha256) return "plaintext sha256 mismatch";
    // The size formula of the spec, for the number of stanzas in this header.
    const count = sealed[9];
    if (sealed.length !== env.envelopeSize(v.plaintext_size, count)) return "envelope size differs from the formula";
    return null;
  }
  if (v.expect === "failure") {
    if (!error) return "expected DecryptionError, envelope opened";
    if (error.message !== "the envelope could not be opened") return `unexpected message: ${error.message}`;
    return null;
  }
  return `unknown expect: ${v.expect}`;
}

const CHECKERS = {
  envelope: checkEnvelopeVector,
  codename: keys.checkCodenameVector,
  keyfile: keys.checkKeyFileVector,
  manifest: keys.checkManifestVector,
};

async function jsonFiles(dir) {
  const names = (await readdir(dir)).filter((n) => n.endsWith(".json")).sort();
  return names.map((n) => join(dir, n));
}

async function vectors(dir) {
  await env.ready();
  // <dir> is either the vectors root (with one subfolder per kind) or one kind's folder.
  const groups = [];
  const kind = basename(dir);
  if (kind in CHECKERS) {
    groups.push([kind, await jsonFiles(dir)]);
  } else {
    for (const k of Object.keys(CHECKERS)) {
      const sub = join(dir, k);
      const exists = await stat(sub).then((s) => s.isDirectory(), () => false);
      if (exists) groups.push([k, await jsonFiles(sub)]);
    }
  }
  let passed = 0;
  let failed = 0;
  for (const [k, files] of groups) {
    for (const file of files) {
      const v = JSON.parse(await readFile(file, "utf8"));
      let problem;
      try {
        problem = await CHECKERS[k](v);
      } catch (e) {
        problem = `error: ${e && e.stack ? e.stack : e}`;
      }
      if (problem) {
        failed += 1;
        console.log(`FAIL ${k}/${v.name}: ${problem}`);
      } else {
        passed += 1;
        console.log(`ok   ${k}/${v.name} (${v.expect ?? "success"})`);
      }
    }
  }
  const total = passed + failed;
  console.log(`${total} vectors: ${passed} passed, ${failed} failed (${groups.map(([k, f]) => `${k} ${f.length}`).join(", ")})`);
  if (total === 0) {
    console.log(`no vectors found under ${dir}`);
    return 1;
  }
  return failed ? 1 : 0;
}

// --- seal / open files ---------------------------------------------------------------------

function keyList(arg) {
  return arg.split(",").map(fromHex);
}

async function sealFile(recipientsArg, inFile, outFile) {
  await env.ready();
  const sealer = new env.EnvelopeSealer(keyList(recipientsArg));
  const out = await open(outFile, "w");
  try {
    await out.write(sealer.header());
    for await (const piece of createReadStream(inFile, { highWaterMark: READ_PIECE })) {
      const ct = sealer.update(piece);
      if (ct.length) await out.write(ct);
    }
    await out.write(sealer.finish());
  } finally {
    await out.close();
  }
  return 0;
}

async function openFile(identitiesArg, inFile, outFile) {
  await env.ready();
  const opener = new env.EnvelopeOpener(keyList(identitiesArg));
  const temp = `${outFile}.partial`;
  const out = await open(temp, "w");
  let ok = false;
  try {
    for await (const piece of createReadStream(inFile, { highWaterMark: READ_PIECE })) {
      const pt = opener.update(piece);
      if (pt.length) await out.write(pt);
    }
    const last = opener.finish();
    if (last.length) await out.write(last);
    ok = true;
  } catch (e) {
    if (!(e instanceof env.DecryptionError)) throw e;
    console.error(`DecryptionError ${inFile}`);
  } finally {
    await out.close();
    if (ok) await rename(temp, outFile);
    else await rm(temp, { force: true });
  }
  return ok ? 0 : 2;
}

const USAGE = `usage:
  node tests/interop/check.mjs vectors <dir>
  node tests/interop/check.mjs seal <recipient_hex>[,…] <in_file> <out_file> [<in_file> <out_file>…]
  node tests/interop/check.mjs open <identity_hex>[,…] <in_file> <out_file> [<in_file> <out_file>…]`;

async function eachPair(keysArg, files, fn) {
  let status = 0;
  for (let i = 0; i < files.length; i += 2) status = Math.max(status, await fn(keysArg, files[i], files[i + 1]));
  return status;
}

async function main(argv) {
  const [command, ...args] = argv;
  const pairs = args.length >= 3 && args.length % 2 === 1;
  if (command === "vectors" && args.length === 1) return vectors(args[0]);
  if (command === "seal" && pairs) return eachPair(args[0], args.slice(1), sealFile);
  if (command === "open" && pairs) return eachPair(args[0], args.slice(1), openFile);
  console.error(USAGE);
  return 64;
}

process.exitCode = await main(process.argv.slice(2));
