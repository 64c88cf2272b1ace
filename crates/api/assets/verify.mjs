// Defendable's share-page verifier: checks a v2 proof bundle (DESIGN §2b "To verify") with
// WebCrypto alone, then renders what it proved. The same module runs under node against the
// Rust test vectors (crates/api/assets/verify.test.mjs), so most cases need no browser.
//
// Steps, in the order the Rust verifier takes them; a failure names the first that fails:
//   format     the bundle has the v2 shape
//   hash       SHA-256 of the body's canonical JSON (RFC 8785) is the receipt's hash
//   id         the receipt id is DCR-<seq>-<first 8 hex of the hash>
//   index      the bundle's leaf index is body.seq
//   signature  the checkpoint is a signed note with a valid Ed25519 signature by a trusted key
//   origin     the checkpoint's log is this receipt's organization's log
//   inclusion  the RFC 9162 inclusion path leads from the leaf to the checkpoint's root

const ENC = new TextEncoder();

/** What each step proves, as the page words it. */
export const STEPS = {
  format: "Bundle format",
  hash: "Body hash",
  id: "Receipt id",
  index: "Leaf index",
  signature: "Checkpoint signature",
  origin: "Log origin",
  inclusion: "Inclusion proof",
};

class StepFailure extends Error {
  constructor(step, detail) {
    super(detail);
    this.step = step;
  }
}

function fail(step, detail) {
  throw new StepFailure(step, detail);
}

/** RFC 8785 canonical JSON of a parsed value. */
export function canonicalize(value) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error("a number that JSON cannot carry");
    // ECMAScript's Number.prototype.toString is JCS's number form (and -0 prints as 0).
    return String(value);
  }
  if (Array.isArray(value)) return "[" + value.map(canonicalize).join(",") + "]";
  if (typeof value === "object") {
    // The default sort compares UTF-16 code units, as JCS orders member names.
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalize(value[k])).join(",") + "}";
  }
  throw new Error(`${typeof value} is not JSON`);
}

async function sha256(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromBase64(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) {
    throw new Error("not standard base64");
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function hash32(text) {
  const h = fromBase64(text);
  if (h.length !== 32) throw new Error("a tree hash has 32 bytes");
  return h;
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** RFC 9162 leaf hash of a receipt hash: SHA-256(0x00 || hash). */
export function leafHash(receiptHash) {
  return sha256(Uint8Array.of(0), receiptHash);
}

/** RFC 9162 §2.1.3.2: whether `path` leads from leaf `index` of `size` to `root`. */
export async function verifyInclusion(index, size, root, leaf, path) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn || root.length !== 32 || leaf.length !== 32) return false;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return false;
    if (fn % 2n === 1n || fn === sn) {
      r = await sha256(Uint8Array.of(1), p, r);
      while (fn % 2n === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await sha256(Uint8Array.of(1), r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(r, root);
}

/** Parses a C2SP verifier key `<name>+<8 hex key id>+<base64(0x01 || Ed25519 key)>`. */
export function parseVkey(vkey) {
  // The name holds no `+`; the base64 key may.
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(vkey.trim());
  if (!m) throw new Error(`verifier key ${vkey}: not <name>+<key id>+<key>`);
  const key = fromBase64(m[3]);
  if (key.length !== 33 || key[0] !== 1) throw new Error(`verifier key ${vkey}: not an Ed25519 key`);
  return { name: m[1], id: m[2], key: key.slice(1), vkey: vkey.trim() };
}

/** The key id of an Ed25519 key under `name`: SHA-256(name || 0x0A || 0x01 || key)[0..4]. */
async function keyId(name, key) {
  const h = await sha256(ENC.encode(name), Uint8Array.of(0x0a, 0x01), key);
  return toHex(h.slice(0, 4));
}

/**
 * Opens a signed note (C2SP signed-note): signatures by unknown keys are ignored, a trusted
 * one that does not verify rejects the note, and at least one trusted signature is required.
 * Returns the note text and the trusted key that signed it.
 */
export async function openNote(note, vkeys) {
  const split = note.lastIndexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) fail("signature", "not a signed note");
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split("\n");
  const trusted = [];
  for (const v of vkeys) {
    const k = parseVkey(v);
    if ((await keyId(k.name, k.key)) !== k.id) throw new Error(`verifier key ${v}: key id does not match the key`);
    trusted.push(k);
  }
  let signedBy = null;
  for (const line of lines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) fail("signature", "a signature line is malformed");
    let sig;
    try {
      sig = fromBase64(m[2]);
    } catch {
      fail("signature", "a signature is not base64");
    }
    if (sig.length < 5) fail("signature", "a signature is too short");
    const id = toHex(sig.slice(0, 4));
    const k = trusted.find((t) => t.name === m[1] && t.id === id);
    if (!k) continue;
    const key = await crypto.subtle.importKey("raw", k.key, { name: "Ed25519" }, false, ["verify"]);
    const ok = sig.length === 68 && (await crypto.subtle.verify({ name: "Ed25519" }, key, sig.slice(4), ENC.encode(text)));
    if (!ok) fail("signature", `the Ed25519 signature by ${k.name} (key ${k.id}) does not verify: the checkpoint was altered or not signed by this key`);
    signedBy = signedBy ?? k;
  }
  if (!signedBy) fail("signature", "no trusted key signed this checkpoint");
  return { text, signedBy };
}

/** Parses a checkpoint body: origin, decimal size, base64 root; this log writes no extensions. */
function parseCheckpoint(text) {
  const lines = text.slice(0, -1).split("\n");
  if (lines.length !== 3) fail("signature", "the note is not a checkpoint of this log (origin, size and root lines only)");
  const [origin, sizeText, rootText] = lines;
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) fail("signature", "the checkpoint size is not a decimal number");
  let root;
  try {
    root = hash32(rootText);
  } catch {
    fail("signature", "the checkpoint root is not a base64 hash");
  }
  return { origin, size: BigInt(sizeText), root, rootText };
}

/**
 * Verifies a v2 proof bundle against trusted verifier keys. Never throws: returns
 * `{ ok: true, proved, receipt, checkpoint }` or `{ ok: false, step, label, detail, proved }`,
 * where `proved` lists the steps that passed before the failure.
 */
export async function verifyBundle(bundle, vkeys) {
  const proved = [];
  const pass = (step, detail) => proved.push({ step, label: STEPS[step], detail });
  try {
    const r = bundle && bundle.receipt;
    const body = r && r.body;
    if (!bundle || bundle.v !== 2) fail("format", `bundle version ${bundle && bundle.v} is not 2`);
    if (!body || typeof body !== "object" || typeof r.hash !== "string" || typeof r.receipt_id !== "string") {
      fail("format", "the bundle has no receipt projection {receipt_id, hash, body}");
    }
    if (!Number.isSafeInteger(body.seq) || body.seq < 0) fail("format", "body.seq is not a sequence number");
    if (!Number.isSafeInteger(bundle.index) || !Array.isArray(bundle.inclusion) || typeof bundle.checkpoint !== "string") {
      fail("format", "the bundle has no index, inclusion path or checkpoint");
    }
    let canonical;
    try {
      canonical = canonicalize(body);
    } catch (e) {
      fail("hash", `the body cannot be canonicalized: ${e.message}`);
    }
    const hash = await sha256(ENC.encode(canonical));
    if (toHex(hash) !== r.hash) {
      fail("hash", `SHA-256 of the canonical body is ${toHex(hash)}, but the receipt says ${r.hash}: the body was altered`);
    }
    pass("hash", `SHA-256 of the body's canonical JSON is ${r.hash}`);
    const id = `DCR-${String(body.seq).padStart(6, "0")}-${r.hash.slice(0, 8)}`;
    if (r.receipt_id !== id) fail("id", `the receipt id ${r.receipt_id} is not ${id} (from seq and hash)`);
    pass("id", `${id} is made of seq ${body.seq} and the hash`);
    if (bundle.index !== body.seq) fail("index", `the bundle's leaf index ${bundle.index} is not body.seq ${body.seq}`);
    pass("index", `leaf ${body.seq} of the log`);
    const note = await openNote(bundle.checkpoint, vkeys);
    const cp = parseCheckpoint(note.text);
    pass("signature", `Ed25519 signature by ${note.signedBy.name} (key ${note.signedBy.id}) verifies`);
    const origin = `${note.signedBy.name}/orgs/${body.org}`;
    if (cp.origin !== origin) fail("origin", `the checkpoint is of the log ${cp.origin}, not ${origin}`);
    pass("origin", `the log ${cp.origin}`);
    let path;
    try {
      path = bundle.inclusion.map(hash32);
    } catch {
      fail("inclusion", "an inclusion hash is not base64 of 32 bytes");
    }
    const leaf = await leafHash(hash);
    if (!(await verifyInclusion(body.seq, cp.size, cp.root, leaf, path))) {
      fail("inclusion", `the inclusion path does not lead from leaf ${body.seq} to the root of the log of size ${cp.size}: the receipt or the path was altered`);
    }
    pass("inclusion", `leaf ${body.seq} is in the tree of ${cp.size} receipts with root ${cp.rootText}`);
    return {
      ok: true,
      proved,
      receipt: r,
      checkpoint: { origin: cp.origin, size: String(cp.size), root: cp.rootText, signedBy: note.signedBy.vkey },
    };
  } catch (e) {
    if (e instanceof StepFailure) return { ok: false, step: e.step, label: STEPS[e.step], detail: e.message, proved };
    return { ok: false, step: "format", label: STEPS.format, detail: String(e.message || e), proved };
  }
}

// ---- The page: verify the embedded bundle, then render from what was verified. ----

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

/** Text for a public field's value: strings as they are, anything else as JSON. */
export function fieldText(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function renderReceipt(receipt, checkpoint) {
  const body = receipt.body;
  const set = (id, text) => {
    const node = document.getElementById(id);
    if (node) node.textContent = text;
  };
  set("r-kind", String(body.kind));
  set("r-created", String(body.created_at));
  set("r-id", receipt.receipt_id);
  set("r-hash", receipt.hash);
  set("r-origin", checkpoint.origin);
  set("r-size", checkpoint.size);
  const rows = document.getElementById("r-fields");
  if (rows) {
    const fields = Object.entries(body.public || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    rows.replaceChildren(
      ...fields.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, fieldText(v)))),
    );
  }
}

async function page() {
  const data = document.getElementById("bundle");
  const verdict = document.getElementById("verdict");
  if (!data || !verdict) return;
  const checking = document.getElementById("checking");
  if (checking) checking.hidden = false;
  const bundle = JSON.parse(data.textContent);
  const vkeys = JSON.parse(document.getElementById("vkeys").textContent);
  const result = await verifyBundle(bundle, vkeys);
  const steps = el("ol", { class: "steps" });
  for (const p of result.proved) steps.append(el("li", { class: "ok" }, `✔ ${p.label}: ${p.detail}`));
  verdict.replaceChildren();
  if (result.ok) {
    renderReceipt(result.receipt, result.checkpoint);
    verdict.className = "verdict good";
    verdict.append(
      el("h2", { id: "verdict-title" }, "✔ Verified in your browser"),
      el("p", {}, `This receipt is entry ${result.receipt.body.seq} of a log of ${result.checkpoint.size} receipts, signed by ${result.checkpoint.signedBy}.`),
      steps,
    );
  } else {
    verdict.className = "verdict bad";
    steps.append(el("li", { class: "bad" }, `✘ ${result.label}: ${result.detail}`));
    verdict.append(
      el("h2", { id: "verdict-title" }, `✘ Not verified: ${result.label} failed`),
      el("p", {}, "Do not rely on this receipt. The values shown are what the server sent, unproven."),
      steps,
    );
    document.body.classList.add("unverified");
  }
  verdict.dataset.result = result.ok ? "ok" : result.step;
}

if (typeof document !== "undefined") {
  page().catch((e) => {
    const verdict = document.getElementById("verdict");
    if (verdict) verdict.textContent = `✘ The check could not run: ${e.message}`;
  });
}
