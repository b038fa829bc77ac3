// Unit tests of verify.js in node, against vectors the Go code made
// (internal/web/web_test.go writes them and runs this file):
//
//   node test/verify_test.mjs VECTORS.json
//
// verify.js must accept exactly the policies and signed checkpoints that
// the Go package checkpoint accepts, with the same cosigners, format tile
// paths as Tessera does, and check inclusion from tiles, failing on a
// tampered tile or entry. Exits non-zero on any disagreement.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// Node 18 has WebCrypto only as node:crypto's webcrypto; 19 and later as a global.
if (!globalThis.crypto || !globalThis.crypto.subtle) globalThis.crypto = (await import("node:crypto")).webcrypto;

const here = fileURLToPath(new URL(".", import.meta.url));
await import(pathToFileURL(join(here, "..", "static", "ui", "verify.js")).href);
const V = globalThis.TidemarkVerify;
if (!V) throw new Error("verify.js did not define TidemarkVerify");

const vectors = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failures = 0, passes = 0;
function check(name, ok, detail) {
  if (ok) {
    passes++;
  } else {
    failures++;
    console.log("FAIL " + name + (detail ? ": " + detail : ""));
  }
}

// WebCrypto's Ed25519 must be there: node 20 has it.
{
  const k = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, k.privateKey, new Uint8Array([1, 2, 3]));
  check("WebCrypto Ed25519", await crypto.subtle.verify({ name: "Ed25519" }, k.publicKey, sig, new Uint8Array([1, 2, 3])));
}

// base64: only the canonical encoding.
check("base64 canonical", V.b64decode("AAE=").length === 2);
for (const bad of ["AAF=", "AAE", "AA E=", "AAE=\n", ""]) {
  let threw = false;
  try {
    V.b64decode(bad);
  } catch (e) {
    threw = true;
  }
  check("base64 refuses " + JSON.stringify(bad), threw);
}

// Policies.
for (const p of vectors.policies) {
  let ok = true, err = "";
  try {
    await V.parsePolicy(p.text);
  } catch (e) {
    ok = false;
    err = e.message;
  }
  check("policy " + JSON.stringify(p.name), ok === p.ok, "verify.js " + (ok ? "accepts" : "refuses (" + err + ")") + ", Go " + (p.ok ? "accepts" : "refuses (" + p.error + ")"));
}
const policy = await V.parsePolicy(vectors.policy);

// Signed checkpoints.
for (const c of vectors.checkpoints) {
  let verdict, err = "", got = null;
  try {
    got = await V.verifyCheckpoint(policy, c.text);
    verdict = got.quorumMet ? "ok" : "quorum";
  } catch (e) {
    verdict = e.kind || "error";
    err = e.message;
  }
  check("checkpoint " + JSON.stringify(c.name), verdict === c.verdict, "verify.js says " + verdict + (err ? " (" + err + ")" : "") + ", Go says " + c.verdict + (c.error ? " (" + c.error + ")" : ""));
  if (verdict === "ok" && c.verdict === "ok") {
    const mine = Object.fromEntries(Array.from(got.cosigners.entries(), ([n, x]) => [n, x.time]));
    check("cosigners of " + JSON.stringify(c.name), JSON.stringify(Object.entries(mine).sort()) === JSON.stringify(Object.entries(c.cosigners).sort()), JSON.stringify(mine) + " vs " + JSON.stringify(c.cosigners));
    check("cosigned-by time of " + JSON.stringify(c.name), (got.cosignedBy || 0) === (c.cosigned_by || 0), got.cosignedBy + " vs " + c.cosigned_by);
  }
}

// Tile paths.
for (const p of vectors.paths) {
  const mine = p.kind === "tile" ? V.tilePath(p.level, p.index, p.width) : V.entriesPath(p.index, p.width);
  check("path " + p.path, mine === p.path, mine);
}

// Inclusion from tiles, through checkEntry with fetchers reading files.
const readTileFile = (path, flip) => {
  const b = new Uint8Array(readFileSync(join(vectors.tile_dir, path)));
  if (flip && flip.path === path) b[flip.offset] ^= 0x01;
  return b;
};
for (const c of vectors.inclusions) {
  const flip = c.flip_path ? { path: c.flip_path, offset: c.flip_offset } : null;
  const io = {
    checkpoint: async () => c.checkpoint,
    tile: async (level, index, width) => readTileFile(V.tilePath(level, index, width), flip),
    bundle: async (index, width) => readTileFile(V.entriesPath(index, width), flip),
  };
  const steps = [];
  const res = await V.checkEntry(policy, c.index, io, (name, status, detail) => steps.push({ name, status, detail }));
  const failed = steps.filter((s) => s.status === "fail");
  const summary = steps.map((s) => s.name + "=" + s.status + (s.status === "fail" ? " (" + s.detail + ")" : "")).join(", ");
  if (c.ok) {
    check("inclusion " + c.name, res.ok && failed.length === 0 && steps.map((s) => s.name).join() === "signature,quorum,leaf,root", summary);
  } else {
    check("inclusion " + c.name + " fails at " + c.fail_step, !res.ok && failed.length === 1 && failed[0].name === c.fail_step, summary);
  }
}

// A leaf is an event, a commitment or an erasure exactly when
// checkpoint.ParseLeaf, ParseCommitmentLeaf or ParseErasureLeaf accepts it,
// with the same values.
for (const l of vectors.leaves) {
  const bytes = Uint8Array.from(Buffer.from(l.b64, "base64"));
  const got = V.parseLeaf(bytes);
  check("leaf " + l.name + (l.event ? " is an event" : " is not an event"), (got.kind === "event") === l.event, got.notLeaf || got.kind);
  check("leaf " + l.name + " is " + l.kind, got.kind === l.kind, "verify.js says " + got.kind + (got.notLeaf ? " (" + got.notLeaf + ")" : ""));
  if (got.kind === l.kind && l.kind === "commitment") {
    check("leaf " + l.name + ": its values", got.commitment === l.commitment && got.received === l.received && got.source === l.source, JSON.stringify([got.commitment, got.received, got.source]));
  }
  if (got.kind === l.kind && l.kind === "erasure") {
    check("leaf " + l.name + ": its values", JSON.stringify(got.entries) === JSON.stringify(l.entries) && got.reason === l.reason && got.received === l.received && got.source === l.source,
      JSON.stringify([got.entries.slice(0, 3), got.reason, got.received, got.source]));
  }
}

// An opening opens a commitment leaf exactly when Opening.Verify says so.
for (const o of vectors.openings) {
  const c = V.parseLeaf(Uint8Array.from(Buffer.from(o.commitment, "base64")));
  let ok = true, err = "";
  try {
    const l = await V.verifyOpening(c, { salt: o.salt, leaf: o.leaf });
    ok = l.kind === "event";
  } catch (e) {
    ok = false;
    err = e.message;
  }
  check("opening " + JSON.stringify(o.name), c.kind === "commitment" && ok === o.ok, "verify.js " + (ok ? "accepts" : "refuses (" + err + ")") + ", Go " + (o.ok ? "accepts" : "refuses (" + o.error + ")"));
}
{
  const c = { kind: "commitment", commitment: "00".repeat(32), received: "2026-11-24T09:00:00.000000001Z", source: "s" };
  for (const bad of [null, {}, { salt: "AAE", leaf: "" }]) {
    let threw = false;
    try {
      await V.verifyOpening(c, bad);
    } catch (e) {
      threw = e.kind === "opening";
    }
    check("verifyOpening refuses " + JSON.stringify(bad), threw);
  }
}
{
  const e = { entries: [[5, 6], [100, 200]] };
  check("erasureCovers", V.erasureCovers(e, 5) && !V.erasureCovers(e, 6) && V.erasureCovers(e, 199) && !V.erasureCovers(e, 200) && !V.erasureCovers(e, 4));
}

// A leaf parses as an event only when it is one.
{
  const enc = new TextEncoder();
  check("event leaf", V.parseLeaf(enc.encode('{"event":{"actor":"a"},"received":"2026-11-24T09:00:00.000000001Z","source":"s","v":1}')).kind === "event");
  check("a leaf-shaped entry the Go code refuses", V.parseLeaf(enc.encode('{"event":{"actor":"a"},"received":"r","source":"s","v":1}')).kind === "raw");
  check("raw JSON", V.parseLeaf(enc.encode('{"actor":"a"}')).kind === "raw");
  check("raw bytes", V.parseLeaf(new Uint8Array([0xff, 0x00])).kind === "raw");
}

console.log(passes + " passed, " + failures + " failed");
if (failures > 0) process.exit(1);
console.log("all passed");
