// Runs the share page's verifier (verify.mjs) under node against the Rust test vectors:
//   node verify.test.mjs <crates/ledger/tests/it/vectors>
// bundles.json: every bundle must verify or fail at the step the Rust verifier fails at;
// merkle.json: the RFC 9162 inclusion vectors of transparency-dev/merkle;
// tessera.json: checkpoints signed by another implementation (tessera) open under its vkey.
// Exits non-zero on any disagreement, naming each.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { canonicalize, openNote, verifyBundle, verifyInclusion } from "./verify.mjs";

const dir = process.argv[2];
const load = (name) => JSON.parse(readFileSync(join(dir, name), "utf8"));
const failures = [];
let checked = 0;
const check = (ok, what) => {
  checked += 1;
  if (!ok) failures.push(what);
};

const bundles = load("bundles.json");
for (const c of bundles.cases) {
  const got = await verifyBundle(c.bundle, bundles.vkeys);
  const step = got.ok ? null : got.step;
  check(step === c.fails, `bundles.json "${c.desc}": want ${c.fails ?? "verified"}, got ${step ?? "verified"} ${got.detail ?? ""}`);
}

const b64 = (s) => Uint8Array.from(atob(s), (ch) => ch.charCodeAt(0));
const merkle = load("merkle.json");
for (const v of merkle.inclusion) {
  let ok;
  try {
    ok = await verifyInclusion(v.leafIdx, v.treeSize, b64(v.root), b64(v.leafHash), (v.proof ?? []).map(b64));
  } catch {
    ok = false;
  }
  check(ok === !v.wantErr, `merkle.json ${v.file} (${v.desc}): want ${v.wantErr ? "rejected" : "accepted"}`);
}

const tessera = load("tessera.json");
for (const [n, note] of Object.entries(tessera.checkpoints ?? {})) {
  let ok;
  try {
    ok = (await openNote(note, [tessera.vkey])).signedBy.vkey === tessera.vkey;
  } catch (e) {
    ok = false;
  }
  check(ok, `tessera.json checkpoint ${n} does not open under ${tessera.vkey}`);
}

// RFC 8785 §3.2.3's example, and the number forms of its Appendix B.
const rfc = { numbers: [333333333.33333329, 1e30, 4.5, 2e-3, 0.000000000000000000000000001], string: "€$\u000f\nA'B\"\\\\\"/", literals: [null, true, false] };
check(
  canonicalize(rfc) === '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
  "RFC 8785 §3.2.3 example",
);

console.log(`verify.mjs: ${checked - failures.length} of ${checked} checks agree with the Rust vectors`);
for (const f of failures) console.error(`DISAGREES: ${f}`);
process.exit(failures.length ? 1 : 0);
