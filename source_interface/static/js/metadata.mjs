// Location and device data removed from photos in the reporter's browser, before sealing.
//
// Phone photos carry where and when they were taken and on which phone (EXIF, XMP, IPTC); the
// analysts open the original attachment, so that data could identify the reporter. With the
// box ticked (the default), JPEG and PNG files lose their metadata here, before they are
// sealed: the image data itself is copied byte for byte, so the picture is exactly the same.
//
// JPEG: every APPn segment but JFIF (APP0), the colour profile (APP2 ICC_PROFILE) and Adobe's
// colour transform (APP14), and every comment (COM), are dropped; that covers EXIF and XMP
// (APP1), IPTC (APP13), multi-picture previews (APP2 MPF) and makers' own segments. The EXIF
// orientation is KEPT, alone in a minimal EXIF segment, so an upright photo stays upright.
// PNG: eXIf, tEXt, iTXt, zTXt and tIME chunks are dropped, and anything after IEND.
// Other files (HEIC photos, videos, documents) are sent as they are: the page says so.

const JPEG_KEPT = [
  [0xe0, "JFIF\0"],
  [0xe2, "ICC_PROFILE\0"],
  [0xee, "Adobe"],
];
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const PNG_DROPPED = new Set(["eXIf", "tEXt", "iTXt", "zTXt", "tIME"]);
const ORIENTATION_TAG = 0x0112;

export class MetadataError extends Error {
  constructor(message) {
    super(message);
    this.name = "MetadataError";
  }
}

function startsWith(bytes, at, text) {
  if (at + text.length > bytes.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** "jpeg", "png" or null, from the first bytes (never from the name or the declared type). */
export function imageKind(bytes) {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg";
  if (bytes.length >= 8 && PNG_SIGNATURE.every((byte, i) => bytes[i] === byte)) return "png";
  return null;
}

/** The orientation (1-8) an APP1 Exif payload states, or null. */
function exifOrientation(payload) {
  const tiff = 6; // after "Exif\0\0"
  if (payload.length < tiff + 8) return null;
  const little = startsWith(payload, tiff, "II");
  if (!little && !startsWith(payload, tiff, "MM")) return null;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const ifd = tiff + view.getUint32(tiff + 4, little);
  if (ifd + 2 > payload.length) return null;
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > payload.length) return null;
    if (view.getUint16(entry, little) === ORIENTATION_TAG && view.getUint16(entry + 2, little) === 3) {
      const value = view.getUint16(entry + 8, little);
      return value >= 1 && value <= 8 ? value : null;
    }
  }
  return null;
}

/** An APP1 segment holding an EXIF with one tag: the orientation. */
function orientationSegment(value) {
  const payload = [
    ..."Exif\0\0".split("").map((c) => c.charCodeAt(0)),
    0x4d, 0x4d, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x08, // big-endian TIFF, IFD0 at 8
    0x00, 0x01, // one entry
    0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, value >> 8, value & 0xff, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, // no next IFD
  ];
  const length = payload.length + 2;
  return new Uint8Array([0xff, 0xe1, length >> 8, length & 0xff, ...payload]);
}

/** A JPEG without its metadata segments; from the first scan on, the bytes are copied as is. */
export function stripJpeg(bytes) {
  if (imageKind(bytes) !== "jpeg") throw new MetadataError("not a JPEG");
  const parts = [bytes.subarray(0, 2)];
  let at = 2;
  while (at < bytes.length) {
    if (bytes[at] !== 0xff) throw new MetadataError("damaged JPEG");
    let markerAt = at + 1;
    while (markerAt < bytes.length && bytes[markerAt] === 0xff) markerAt++; // fill bytes
    if (markerAt >= bytes.length) throw new MetadataError("damaged JPEG");
    const marker = bytes[markerAt];
    if (marker === 0xda || marker === 0xd9) {
      parts.push(bytes.subarray(at)); // the image data (and what follows it), unchanged
      return concat(parts);
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      parts.push(bytes.subarray(at, markerAt + 1));
      at = markerAt + 1;
      continue;
    }
    if (markerAt + 3 > bytes.length) throw new MetadataError("damaged JPEG");
    const length = (bytes[markerAt + 1] << 8) | bytes[markerAt + 2];
    const end = markerAt + 1 + length;
    if (length < 2 || end > bytes.length) throw new MetadataError("damaged JPEG");
    const payload = bytes.subarray(markerAt + 3, end);
    const isApp = marker >= 0xe0 && marker <= 0xef;
    if (isApp || marker === 0xfe) {
      const kept = JPEG_KEPT.some(([app, name]) => app === marker && startsWith(payload, 0, name));
      if (kept) parts.push(bytes.subarray(at, end));
      else if (marker === 0xe1 && startsWith(payload, 0, "Exif\0\0")) {
        const orientation = exifOrientation(payload);
        if (orientation !== null) parts.push(orientationSegment(orientation));
      }
    } else {
      parts.push(bytes.subarray(at, end));
    }
    at = end;
  }
  throw new MetadataError("JPEG without image data");
}

/** A PNG without its text, EXIF and time chunks; every other chunk copied whole, CRC and all. */
export function stripPng(bytes) {
  if (imageKind(bytes) !== "png") throw new MetadataError("not a PNG");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts = [bytes.subarray(0, 8)];
  let at = 8;
  while (at + 12 <= bytes.length) {
    const length = view.getUint32(at);
    const end = at + 12 + length;
    if (end > bytes.length) throw new MetadataError("damaged PNG");
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (!PNG_DROPPED.has(type)) parts.push(bytes.subarray(at, end));
    if (type === "IEND") return concat(parts);
    at = end;
  }
  throw new MetadataError("PNG without its end");
}

/**
 * The file to seal: without metadata if it is a JPEG or a PNG, else the file itself.
 * A JPEG or PNG that cannot be read throws MetadataError: the page then asks the reporter
 * rather than sending data they asked to remove.
 */
export async function withoutMetadata(file) {
  const head = new Uint8Array(await file.slice(0, 8).arrayBuffer());
  const kind = imageKind(head);
  if (kind === null) return file;
  const bytes = new Uint8Array(await file.arrayBuffer());
  const stripped = kind === "jpeg" ? stripJpeg(bytes) : stripPng(bytes);
  return new File([stripped], file.name, { type: file.type });
}
