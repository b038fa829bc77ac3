// Tidemark's verification code for the browser: signed notes, checkpoints,
// keys, policies, cosignatures and Merkle inclusion from tiles. It does no
// I/O of its own (checkEntry takes the fetching functions it may call) and
// touches no page, so the same file runs in node for the unit tests.
//
// It mirrors the Go package github.com/tidemark/tidemark/checkpoint: the
// same strict rules, so that a text the Go code refuses is refused here
// too. The tests in internal/web check that against vectors made by the Go
// code.
//
// A plain script rather than an ES module: browsers refuse module scripts
// loaded from file:// URLs, and this page must also work opened from a file.
// It defines globalThis.TidemarkVerify.
(function (root) {
  "use strict";

  const enc = new TextEncoder();
  const MAX_CHECKPOINT_SIZE = 64 << 10;
  const MAX_POLICY_SIZE = 64 << 10;
  const MAX_SIGNATURES = 100;
  const KEY_ED25519 = 0x01;
  const KEY_COSIGNATURE_V1 = 0x04;
  const TILE_WIDTH = 256;

  class VerifyError extends Error {
    constructor(kind, message) {
      super(message);
      this.kind = kind; // "malformed", "unverified", "quorum", "inclusion", "fetch", "nocrypto", "opening"
    }
  }
  const malformed = (m) => new VerifyError("malformed", m);

  // subtle returns WebCrypto's SubtleCrypto or throws a clear error: it
  // exists only in secure contexts (https, http://localhost, file://).
  function subtle() {
    const c = root.crypto;
    if (!c || !c.subtle) {
      throw new VerifyError("nocrypto",
        "this browser offers no WebCrypto here: crypto.subtle exists only on https pages, http://localhost and file:// pages; open the page one of those ways");
    }
    return c.subtle;
  }

  async function sha256(bytes) {
    return new Uint8Array(await subtle().digest("SHA-256", bytes));
  }

  function concat(...parts) {
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  function equalBytes(a, b) {
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
    return d === 0;
  }

  function toHex(b) {
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function b64encode(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s);
  }

  // b64decode decodes standard padded base64 and accepts only its one
  // canonical encoding, as the Go code does (decodeCanonicalBase64).
  function b64decode(s) {
    if (s.length === 0) throw malformed("empty base64");
    if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw malformed("invalid base64");
    let bin;
    try {
      bin = atob(s);
    } catch (e) {
      throw malformed("invalid base64");
    }
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    if (b64encode(out) !== s) throw malformed("non-canonical base64");
    return out;
  }

  // utf8 decodes bytes as UTF-8, refusing invalid sequences.
  function utf8(bytes) {
    try {
      return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch (e) {
      throw malformed("not valid UTF-8");
    }
  }

  // A key name: non-empty, no Unicode space, no control character, no '+'
  // (signed-note's rule, plus no control characters, as in Go).
  function validKeyName(name) {
    return name.length > 0 && !/[\p{White_Space}\p{Cc}+]/u.test(name);
  }

  // checkNoteText: no control characters but "\n", and no CR.
  function checkNoteText(s) {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 13) throw malformed("carriage return in the text (lines must end in \\n alone)");
      if (c < 0x20 && c !== 10) throw malformed("control character U+" + c.toString(16).toUpperCase().padStart(4, "0") + " in the text");
    }
  }

  function parseDecimal(s) {
    if (s.length === 0) throw malformed("empty number");
    if (!/^[0-9]+$/.test(s)) throw malformed(JSON.stringify(s) + " is not a decimal number");
    if (s.length > 1 && s[0] === "0") throw malformed(JSON.stringify(s) + " has a leading zero");
    const n = BigInt(s);
    if (n > 0xffffffffffffffffn) throw malformed(JSON.stringify(s) + " is larger than 2^64-1");
    return n;
  }

  // keyHash: the first 4 bytes of SHA-256(name || "\n" || type || key), as
  // an unsigned 32-bit number.
  async function keyHash(name, typedKey) {
    const h = await sha256(concat(enc.encode(name + "\n"), typedKey));
    return ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0;
  }

  const hash8 = (h) => h.toString(16).padStart(8, "0");

  // parseVKey checks a "name+hash+base64(type||key)" verifier key strictly,
  // for one type (0x01 a log's Ed25519 key, 0x04 a witness's cosignature/v1
  // key), and imports it for WebCrypto. role goes into messages.
  async function parseVKey(vkey, wantType, role) {
    role = role || (wantType === KEY_ED25519 ? "log" : "witness");
    const fail = (m) => malformed(role + " key: " + m);
    if (enc.encode(vkey).length > 1024) throw fail("more than 1024 bytes");
    const i = vkey.indexOf("+");
    const j = i < 0 ? -1 : vkey.indexOf("+", i + 1);
    if (i < 0 || j < 0) throw fail("want name+hash+key");
    const name = vkey.slice(0, i), hash16 = vkey.slice(i + 1, j), key64 = vkey.slice(j + 1);
    if (!validKeyName(name)) throw fail("name " + JSON.stringify(name) + " is not valid");
    if (!/^[0-9a-f]{8}$/.test(hash16)) throw fail("key hash " + JSON.stringify(hash16) + " is not 8 lowercase hex digits");
    let key;
    try {
      key = b64decode(key64);
    } catch (e) {
      throw fail(e.message);
    }
    if (key.length !== 33) throw fail("key is " + key.length + " bytes, want 33 (a type byte and 32 bytes)");
    if (key[0] !== wantType) {
      throw fail("key type is 0x" + key[0].toString(16).padStart(2, "0") + ", want 0x0" + wantType +
        (wantType === KEY_ED25519 ? " (Ed25519, a log key)" : " (cosignature/v1, a witness key)"));
    }
    const hash = parseInt(hash16, 16) >>> 0;
    const want = await keyHash(name, key);
    if (want !== hash) throw fail("key hash " + hash16 + " does not match the key (want " + hash8(want) + ")");
    const pub = key.slice(1);
    const cryptoKey = await subtle().importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    return { name, hash, type: key[0], pub, id: name + "+" + hash16, vkey, cryptoKey };
  }

  // parseCheckpoint parses a checkpoint body (tlog-checkpoint): origin,
  // size, base64 root hash, optional non-empty extension lines.
  function parseCheckpoint(body) {
    if (enc.encode(body).length > MAX_CHECKPOINT_SIZE) throw malformed("body is more than " + MAX_CHECKPOINT_SIZE + " bytes");
    checkNoteText(body);
    if (!body.endsWith("\n")) throw malformed("body does not end with a newline");
    const lines = body.slice(0, -1).split("\n");
    if (lines.length < 3) throw malformed("body has " + lines.length + " lines, want at least 3 (origin, size, root hash)");
    if (lines[0] === "") throw malformed("origin (line 1) is empty");
    let size;
    try {
      size = parseDecimal(lines[1]);
    } catch (e) {
      throw malformed("size (line 2): " + e.message);
    }
    let hash;
    try {
      hash = b64decode(lines[2]);
    } catch (e) {
      throw malformed("root hash (line 3): " + e.message);
    }
    if (hash.length !== 32) throw malformed("root hash (line 3) is " + hash.length + " bytes, want 32");
    const extensions = lines.slice(3);
    extensions.forEach((l, k) => {
      if (l === "") throw malformed("extension line (line " + (k + 4) + ") is empty");
    });
    return { origin: lines[0], size, hash, extensions };
  }

  // parseSignedNote splits a signed note (C2SP signed-note) into its text
  // and signature lines, as strictly as the Go code: canonical base64, one
  // line per key ID, at most 100 signatures.
  function parseSignedNote(text) {
    if (enc.encode(text).length > MAX_CHECKPOINT_SIZE) throw malformed("signed checkpoint is more than " + MAX_CHECKPOINT_SIZE + " bytes");
    checkNoteText(text);
    const split = text.lastIndexOf("\n\n");
    if (split < 0) throw malformed("signed checkpoint has no blank line before its signatures");
    const body = text.slice(0, split + 1), sigText = text.slice(split + 2);
    if (sigText === "") throw malformed("signed checkpoint has no signature lines");
    if (!sigText.endsWith("\n")) throw malformed("signed checkpoint does not end with a newline");
    const lines = sigText.slice(0, -1).split("\n");
    if (lines.length > MAX_SIGNATURES) throw malformed("signed checkpoint has " + lines.length + " signatures, more than the limit of " + MAX_SIGNATURES);
    const seen = new Map();
    const sigs = lines.map((line, k) => {
      if (!line.startsWith("\u2014 ")) throw malformed("signature line " + (k + 1) + " does not start with \"\u2014 \" (U+2014, space)");
      const rest = line.slice(2);
      const sp = rest.indexOf(" ");
      const name = sp < 0 ? rest : rest.slice(0, sp);
      if (sp < 0 || !validKeyName(name)) throw malformed("signature line " + (k + 1) + ": want \"\u2014 name base64\" with a valid key name");
      let sig;
      try {
        sig = b64decode(rest.slice(sp + 1));
      } catch (e) {
        throw malformed("signature line " + (k + 1) + ": " + e.message);
      }
      if (sig.length < 5) throw malformed("signature line " + (k + 1) + ": " + sig.length + " bytes is too short for a key hash and a signature");
      const hash = ((sig[0] << 24) | (sig[1] << 16) | (sig[2] << 8) | sig[3]) >>> 0;
      const id = name + "+" + hash8(hash);
      if (seen.has(id)) throw malformed("signature lines " + seen.get(id) + " and " + (k + 1) + " are both by key " + id);
      seen.set(id, k + 1);
      return { name, hash, id, sig: sig.slice(4), line: k + 1 };
    });
    return { body, sigs };
  }

  async function ed25519Verify(key, sig, msg) {
    if (sig.length !== 64) return false;
    return subtle().verify({ name: "Ed25519" }, key.cryptoKey, sig, msg);
  }

  // verifyLogSignature checks that one of logKeys, named after the
  // checkpoint's origin, signed note. A signature line by one of logKeys
  // that does not verify is an error even if another one does, as
  // signed-note requires. Returns the key that signed.
  async function verifyLogSignature(note, checkpoint, logKeys) {
    const msg = enc.encode(note.body);
    let good = null;
    for (const s of note.sigs) {
      const k = logKeys.find((k) => k.name === s.name && k.hash === s.hash);
      if (!k) continue;
      if (!(await ed25519Verify(k, s.sig, msg))) {
        throw new VerifyError("unverified", "checkpoint for origin " + JSON.stringify(checkpoint.origin) + " has an invalid signature by log key " + s.id);
      }
      if (!good) good = k;
    }
    if (!good) {
      const names = note.sigs.map((s) => s.id).join(", ") || "no key";
      throw new VerifyError("unverified", "checkpoint for origin " + JSON.stringify(checkpoint.origin) + " has no signature by the given log keys (signed by " + names + ")");
    }
    if (!note.sigs.some((s) => s.name === checkpoint.origin && logKeys.some((k) => k.name === s.name && k.hash === s.hash))) {
      throw new VerifyError("unverified", "checkpoint for origin " + JSON.stringify(checkpoint.origin) + " is signed only by log keys for other origins (" + good.name + ")");
    }
    return good;
  }

  // verifyCosignatures returns, for each of witnesses (policy witnesses:
  // {name, key}) that made a valid cosignature/v1 over note, its timestamp
  // in seconds: a Map from the policy name to {time, id}. A cosignature
  // line by one of their keys that does not verify is an error.
  async function verifyCosignatures(note, witnesses) {
    const got = new Map();
    for (const s of note.sigs) {
      const w = witnesses.find((w) => w.key.name === s.name && w.key.hash === s.hash);
      if (!w) continue;
      if (s.sig.length !== 8 + 64) {
        throw new VerifyError("unverified", "invalid signature by witness key " + s.id + ": " + (s.sig.length + 4) + " bytes, not a cosignature/v1 (76 bytes)");
      }
      let ts = 0n;
      for (let i = 0; i < 8; i++) ts = (ts << 8n) | BigInt(s.sig[i]);
      const msg = enc.encode("cosignature/v1\ntime " + ts.toString() + "\n" + note.body);
      if (!(await ed25519Verify(w.key, s.sig.slice(8), msg))) {
        throw new VerifyError("unverified", "invalid cosignature by witness " + w.name + " (key " + s.id + ")");
      }
      if (ts > 0x7fffffffffffffffn) throw malformed("cosignature by " + s.id + " has a timestamp beyond any time");
      got.set(w.name, { time: Number(ts), id: s.id });
    }
    return got;
  }

  // parsePolicy parses a trust policy (tlog-policy grammar), as strictly as
  // checkpoint.ParsePolicy. Errors name the line.
  async function parsePolicy(text) {
    if (typeof text !== "string") text = utf8(text);
    if (enc.encode(text).length > MAX_POLICY_SIZE) throw malformed("policy is more than " + MAX_POLICY_SIZE + " bytes");
    const p = { logs: [], witnesses: [], groups: [], quorum: "", text };
    const defined = new Map(), keys = new Map(), keyIDs = new Map();
    let quorumLine = 0, logLine = 0;
    let t = text.endsWith("\n") ? text.slice(0, -1) : text;
    const lines = t.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const n = i + 1;
      const err = (m) => malformed("policy line " + n + ": " + m);
      let line = lines[i];
      for (const ch of line) {
        const c = ch.codePointAt(0);
        if (c === 13) throw err("carriage return: save the file with \\n line endings");
        if ((c < 0x20 && c !== 9) || c === 0x7f) throw err("control character U+" + c.toString(16).toUpperCase().padStart(4, "0"));
      }
      const hashAt = line.indexOf("#");
      if (hashAt >= 0) line = line.slice(0, hashAt);
      const f = line.split(/[ \t]+/).filter((x) => x !== "");
      if (f.length === 0) continue;
      const checkKey = (k, what) => {
        const raw = b64encode(k.pub);
        if (keys.has(raw)) throw err(what + "key is the same public key as the one on line " + keys.get(raw));
        if (keyIDs.has(k.id)) throw err(what + "key ID " + k.id + " is the same as the one on line " + keyIDs.get(k.id));
        keys.set(raw, n);
        keyIDs.set(k.id, n);
      };
      const url = (idx, what) => {
        if (f.length <= idx) return "";
        let u;
        try {
          u = new URL(f[idx]);
        } catch (e) {
          throw err(what + "URL " + JSON.stringify(f[idx]) + " is not an absolute http or https URL");
        }
        if ((u.protocol !== "http:" && u.protocol !== "https:") || u.host === "") {
          throw err(what + "URL " + JSON.stringify(f[idx]) + " is not an absolute http or https URL");
        }
        return f[idx];
      };
      const newName = (name, what) => {
        if (name === "none") throw err(what + " name \"none\" is reserved for \"quorum none\"");
        for (const ch of name) {
          const c = ch.codePointAt(0);
          if (c < 0x21 || c === 0x7f) throw err(what + " name " + JSON.stringify(name) + " is not valid");
        }
        if (defined.has(name)) throw err(what + " name " + JSON.stringify(name) + " is already defined on line " + defined.get(name));
      };
      switch (f[0]) {
        case "log": {
          if (f.length !== 2 && f.length !== 3) throw err("want \"log VKEY [URL]\", got " + f.length + " fields");
          let k;
          try {
            k = await parseVKey(f[1], KEY_ED25519, "log");
          } catch (e) {
            throw err(e.message);
          }
          if (p.logs.length > 0 && k.name !== p.logs[0].origin) {
            throw err("log key for origin " + JSON.stringify(k.name) + ", but line " + logLine + " has a key for " + JSON.stringify(p.logs[0].origin) + ": a policy is for one log");
          }
          checkKey(k, "");
          const u = url(2, "");
          if (logLine === 0) logLine = n;
          p.logs.push({ origin: k.name, vkey: f[1], key: k, url: u });
          break;
        }
        case "witness": {
          if (f.length !== 3 && f.length !== 4) throw err("want \"witness NAME VKEY [URL]\", got " + f.length + " fields");
          newName(f[1], "witness");
          let k;
          try {
            k = await parseVKey(f[2], KEY_COSIGNATURE_V1, "witness");
          } catch (e) {
            throw err("witness " + JSON.stringify(f[1]) + ": " + e.message);
          }
          checkKey(k, "witness " + JSON.stringify(f[1]) + ": ");
          const u = url(3, "witness " + JSON.stringify(f[1]) + ": ");
          defined.set(f[1], n);
          p.witnesses.push({ name: f[1], vkey: f[2], key: k, url: u });
          break;
        }
        case "group": {
          if (f.length < 4) throw err("want \"group NAME K|any|all MEMBER...\" with at least one member");
          const name = f[1], k = f[2], members = f.slice(3);
          newName(name, "group");
          members.forEach((m, j) => {
            if (!defined.has(m)) throw err("group " + JSON.stringify(name) + ": member " + JSON.stringify(m) + " is not a witness or group defined on an earlier line");
            if (members.slice(0, j).includes(m)) throw err("group " + JSON.stringify(name) + ": member " + JSON.stringify(m) + " is listed twice");
          });
          let threshold;
          if (k === "any") threshold = 1;
          else if (k === "all") threshold = members.length;
          else {
            let v = -1n;
            try {
              v = parseDecimal(k);
            } catch (e) { /* below */ }
            if (v < 1n || v > BigInt(members.length)) {
              throw err("group " + JSON.stringify(name) + ": threshold " + JSON.stringify(k) + " must be \"any\", \"all\" or a number from 1 to " + members.length);
            }
            threshold = Number(v);
          }
          defined.set(name, n);
          p.groups.push({ name, threshold, members });
          break;
        }
        case "quorum":
          if (f.length !== 2) throw err("want \"quorum NAME\" or \"quorum none\", got " + f.length + " fields");
          if (quorumLine !== 0) throw err("a second quorum line (the first is line " + quorumLine + ")");
          if (!defined.has(f[1]) && f[1] !== "none") throw err("quorum " + JSON.stringify(f[1]) + " is not a witness or group defined on an earlier line");
          quorumLine = n;
          p.quorum = f[1];
          break;
        default:
          throw err("unknown keyword " + JSON.stringify(f[0]) + ": want log, witness, group or quorum");
      }
    }
    if (p.logs.length === 0) throw malformed("policy has no log line: it must name the log's key");
    if (quorumLine === 0) throw malformed("policy has no quorum line: say \"quorum none\" if no witness is needed");
    p.origin = p.logs[0].origin;
    return p;
  }

  // quorumSatisfied reports whether the witnesses named in cosigned (a Set
  // of policy names) meet the policy's quorum.
  function quorumSatisfied(policy, cosigned) {
    if (policy.quorum === "none") return true;
    const met = new Map();
    for (const w of policy.witnesses) met.set(w.name, cosigned.has(w.name));
    for (const g of policy.groups) {
      met.set(g.name, g.members.filter((m) => met.get(m)).length >= g.threshold);
    }
    return met.get(policy.quorum) === true;
  }

  // quorumCosignedBy returns the earliest time (seconds) by which a quorum
  // had cosigned, or null (no quorum, or "quorum none").
  function quorumCosignedBy(policy, cosigners) {
    if (policy.quorum === "none") return null;
    const byTime = Array.from(cosigners.entries()).sort((a, b) => a[1].time - b[1].time);
    const set = new Set();
    for (const [name, c] of byTime) {
      set.add(name);
      if (quorumSatisfied(policy, set)) return c.time;
    }
    return null;
  }

  // describeQuorum says in words what the quorum asks for.
  function describeQuorum(policy) {
    if (policy.quorum === "none") return "none (no witness needed)";
    const g = policy.groups.find((g) => g.name === policy.quorum);
    if (!g) return "witness " + policy.quorum;
    return g.threshold + " of " + g.members.join(", ");
  }

  // verifyCheckpoint checks a signed checkpoint against a parsed policy: the
  // log's signature, then the witnesses' cosignatures and the quorum. It
  // returns {checkpoint, note, logKey, cosigners, quorumMet, cosignedBy};
  // it throws on a malformed or wrongly signed checkpoint, and reports an
  // unmet quorum in quorumMet (the caller decides).
  async function verifyCheckpoint(policy, text) {
    if (typeof text !== "string") text = utf8(text);
    const note = parseSignedNote(text);
    const checkpoint = parseCheckpoint(note.body);
    const logKey = await verifyLogSignature(note, checkpoint, policy.logs.map((l) => l.key));
    const cosigners = await verifyCosignatures(note, policy.witnesses);
    const quorumMet = quorumSatisfied(policy, new Set(cosigners.keys()));
    return { checkpoint, note, logKey, cosigners, quorumMet, cosignedBy: quorumCosignedBy(policy, cosigners) };
  }

  // Tile paths (C2SP tlog-tiles): the index in 3-digit groups, all but the
  // last with an "x" prefix; a partial tile or bundle gets ".p/W".
  function fmtIndex(n) {
    let s = String(n % 1000).padStart(3, "0");
    n = Math.floor(n / 1000);
    while (n > 0) {
      s = "x" + String(n % 1000).padStart(3, "0") + "/" + s;
      n = Math.floor(n / 1000);
    }
    return s;
  }
  function tilePath(level, index, width) {
    return "tile/" + level + "/" + fmtIndex(index) + (width && width < TILE_WIDTH ? ".p/" + width : "");
  }
  function entriesPath(index, width) {
    return "tile/entries/" + fmtIndex(index) + (width && width < TILE_WIDTH ? ".p/" + width : "");
  }

  // bundleWidth is the width of entry bundle (or level-0 tile) b in a tree
  // of size entries: 256, or fewer for the last one.
  function bundleWidth(b, size) {
    return Math.min(TILE_WIDTH, size - b * TILE_WIDTH);
  }

  // parseBundle splits an entry bundle into its entries: each a big-endian
  // uint16 length and that many bytes.
  function parseBundle(bytes) {
    const out = [];
    let i = 0;
    while (i < bytes.length) {
      if (i + 2 > bytes.length) throw malformed("entry bundle ends inside a length");
      const n = (bytes[i] << 8) | bytes[i + 1];
      i += 2;
      if (i + n > bytes.length) throw malformed("entry bundle ends inside an entry");
      out.push(bytes.subarray(i, i + n));
      i += n;
    }
    return out;
  }

  async function leafHash(entry) {
    return sha256(concat(new Uint8Array([0]), entry));
  }
  async function nodeHash(l, r) {
    return sha256(concat(new Uint8Array([1]), l, r));
  }

  // A TileReader reads node hashes from hash tiles for a tree of a given
  // size, fetching each tile once. getTile(level, index, width) resolves to
  // the tile's bytes (width hashes of 32 bytes).
  class TileReader {
    constructor(size, getTile) {
      this.size = size;
      this.getTile = getTile;
      this.tiles = new Map();
      this.fetched = [];
    }
    async tile(L, t) {
      const key = L + "/" + t;
      if (!this.tiles.has(key)) {
        const count = Math.floor(this.size / 2 ** (8 * L)); // level-8L nodes in the tree
        const width = Math.min(TILE_WIDTH, count - t * TILE_WIDTH);
        if (width <= 0) throw new VerifyError("inclusion", "tile " + tilePath(L, t) + " is outside a tree of size " + this.size);
        const p = (async () => {
          const b = await this.getTile(L, t, width);
          if (b.length !== width * 32) {
            throw new VerifyError("inclusion", "tile " + tilePath(L, t, width) + " is " + b.length + " bytes, want " + width * 32);
          }
          this.fetched.push(tilePath(L, t, width));
          return b;
        })();
        this.tiles.set(key, p);
      }
      return this.tiles.get(key);
    }
    // node returns the hash of the perfect subtree at level l, index i
    // (covering leaves i*2^l .. (i+1)*2^l-1): from tile level floor(l/8),
    // combining the 2^(l mod 8) stored hashes below it.
    async node(l, i) {
      const L = Math.floor(l / 8), r = l % 8;
      const first = i * 2 ** r; // index at level 8L
      const t = Math.floor(first / TILE_WIDTH);
      const tile = await this.tile(L, t);
      let hs = [];
      for (let k = 0; k < 2 ** r; k++) {
        const o = (first % TILE_WIDTH + k) * 32;
        hs.push(tile.subarray(o, o + 32));
      }
      while (hs.length > 1) {
        const next = [];
        for (let k = 0; k < hs.length; k += 2) next.push(await nodeHash(hs[k], hs[k + 1]));
        hs = next;
      }
      return hs[0];
    }
  }

  // rootFromTiles recomputes the root of the tree of size entries with the
  // RFC 6962 recursion MTH(D[lo:hi]), using leaf for the target index and
  // the hash tiles for every perfect subtree that does not contain it.
  async function rootFromTiles(size, index, leaf, reader) {
    if (!(index < size)) throw new VerifyError("inclusion", "index " + index + " is not below the tree size " + size);
    const mth = async (lo, hi) => {
      const n = hi - lo;
      const has = lo <= index && index < hi;
      if (n === 1 && has) return leaf;
      if (!has && (n & (n - 1)) === 0 && lo % n === 0) {
        return reader.node(Math.log2(n), lo / n);
      }
      let k = 1;
      while (k * 2 < n) k *= 2;
      return nodeHash(await mth(lo, lo + k), await mth(lo + k, hi));
    };
    return mth(0, size);
  }

  // parseLeaf reads an entry: a Tidemark event leaf, commitment leaf,
  // erasure leaf, or raw bytes. An entry is one of those leaves only if the
  // Go code (checkpoint.ParseLeaf, ParseCommitmentLeaf, ParseErasureLeaf)
  // says so: exactly the canonical JSON (RFC 8785) of {"event":{...},
  // "idempotency_key"?,"received","source","v":1},
  // {"commitment":"<64 hex>","received","source","v":2} or
  // {"erasure":{"entries":[[from,to],...],"reason"},"received","source","v":2}.
  // Anything else is shown as raw bytes, with notLeaf saying why when it
  // looks like a leaf: otherwise a writer to /add could show here an event
  // "stamped" by the log with any source and time (JSON.parse reads what Go
  // refuses, such as nesting past encoding/json's depth, duplicate names,
  // lone surrogates).
  function parseLeaf(bytes) {
    let s = null;
    try {
      s = utf8(bytes);
    } catch (e) { /* raw */ }
    if (s !== null && s.startsWith("{")) {
      let o = null;
      try {
        o = JSON.parse(s);
      } catch (e) { /* raw */ }
      if (o && typeof o === "object" && !Array.isArray(o) && "v" in o) {
        if ("event" in o) {
          const why = leafProblem(o, s);
          if (why === "") {
            return { kind: "event", event: o.event, received: o.received, source: o.source, idempotencyKey: typeof o.idempotency_key === "string" ? o.idempotency_key : "", bytes };
          }
          return { kind: "raw", bytes, text: s, notLeaf: why, claims: "event" };
        }
        if ("commitment" in o) {
          const why = commitmentProblem(o, s);
          if (why === "") return { kind: "commitment", commitment: o.commitment, received: o.received, source: o.source, bytes };
          return { kind: "raw", bytes, text: s, notLeaf: why, claims: "commitment" };
        }
        if ("erasure" in o) {
          const why = erasureProblem(o, s);
          if (why === "") {
            return { kind: "erasure", entries: o.erasure.entries.map((r) => [r[0], r[1]]), reason: o.erasure.reason, received: o.received, source: o.source, bytes };
          }
          return { kind: "raw", bytes, text: s, notLeaf: why, claims: "erasure" };
        }
      }
    }
    return { kind: "raw", bytes, text: s };
  }

  const MAX_ERASURE_RANGES = 1024; // checkpoint.MaxErasureRanges
  const MAX_ERASURE_REASON = 1024; // checkpoint.MaxErasureReason, in bytes
  const MAX_LEAF_INDEX = Number.MAX_SAFE_INTEGER; // 2^53-1
  const SALT_SIZE = 32; // checkpoint.SaltSize
  const MAX_LEAF_SIZE = 65535; // checkpoint.MaxLeafSize

  // v2Problem checks what commitment and erasure leaves share: their
  // members, "v":2, received and source.
  function v2Problem(o, kind) {
    for (const k of Object.keys(o)) {
      if (![kind, "received", "source", "v"].includes(k)) return "unknown member " + JSON.stringify(k) + " in a " + kind + " leaf";
    }
    if (o.v !== 2) return "a " + kind + " leaf has \"v\":2";
    if (typeof o.source !== "string") return "no source";
    if (LONE_SURROGATE.test(o.source)) return "source is not I-JSON (a lone surrogate)";
    return receivedProblem(o.received);
  }

  // commitmentProblem says why a parsed object o, of text s, is not a
  // canonical commitment leaf, or "" when it is one.
  function commitmentProblem(o, s) {
    const why = v2Problem(o, "commitment");
    if (why !== "") return why;
    if (typeof o.commitment !== "string" || !/^[0-9a-f]{64}$/.test(o.commitment)) return "the commitment is not 64 lowercase hex digits";
    const canon = '{"commitment":"' + o.commitment + '","received":"' + o.received + '","source":' + JSON.stringify(o.source) + ',"v":2}';
    if (canon !== s) return "commitment leaf not in canonical form";
    return "";
  }

  // erasureProblem says why a parsed object o, of text s, is not a
  // canonical erasure leaf, or "" when it is one.
  function erasureProblem(o, s) {
    const why = v2Problem(o, "erasure");
    if (why !== "") return why;
    const e = o.erasure;
    if (!e || typeof e !== "object" || Array.isArray(e)) return "erasure is not an object";
    for (const k of Object.keys(e)) {
      if (k !== "entries" && k !== "reason") return "unknown member " + JSON.stringify(k) + " in erasure";
    }
    if (!Array.isArray(e.entries)) return "entries is not an array";
    if (e.entries.length === 0) return "an erasure must list at least one range of entries";
    if (e.entries.length > MAX_ERASURE_RANGES) return "an erasure lists more than " + MAX_ERASURE_RANGES + " ranges";
    let prev = null;
    for (const r of e.entries) {
      if (!Array.isArray(r) || r.length !== 2 || !r.every((n) => Number.isSafeInteger(n) && n >= 0)) return "each range must be [from,to], two indexes";
      if (r[0] >= r[1]) return "range [" + r[0] + "," + r[1] + ") is empty";
      if (r[1] > MAX_LEAF_INDEX) return "range reaches past 2^53-1";
      if (prev && r[0] <= prev[1]) return "ranges must be sorted and neither overlap nor touch";
      prev = r;
    }
    if (typeof e.reason !== "string" || e.reason === "") return "an erasure needs a reason";
    if (LONE_SURROGATE.test(e.reason)) return "the reason is not valid UTF-8";
    if (enc.encode(e.reason).length > MAX_ERASURE_REASON) return "the reason is more than " + MAX_ERASURE_REASON + " bytes";
    const canon = '{"erasure":{"entries":[' + e.entries.map((r) => "[" + r[0] + "," + r[1] + "]").join(",") + '],"reason":' + JSON.stringify(e.reason) +
      '},"received":"' + o.received + '","source":' + JSON.stringify(o.source) + ',"v":2}';
    if (canon !== s) return "erasure leaf not in canonical form";
    return "";
  }

  // erasureCovers reports whether a parsed erasure leaf lists entry i.
  function erasureCovers(erasure, i) {
    return erasure.entries.some((r) => r[0] <= i && i < r[1]);
  }

  // verifyOpening checks that an opening ({salt, leaf}: base64, as
  // /v1/payloads and receipts carry it) opens a parsed commitment leaf, as
  // checkpoint's Opening.Verify does: a salt of 32 bytes, an event leaf of
  // at most 65535 bytes, SHA-256(salt || leaf) equal to the commitment, a
  // canonical event leaf, with the commitment leaf's received and source.
  // Returns the parsed event leaf; throws a VerifyError ("opening") saying
  // what is wrong.
  async function verifyOpening(commitment, opening) {
    const bad = (m) => new VerifyError("opening", "the opening does not open the commitment: " + m);
    if (!opening || typeof opening !== "object") throw bad("no opening");
    let salt, leaf;
    try {
      salt = b64decode(String(opening.salt));
      leaf = b64decode(String(opening.leaf));
    } catch (e) {
      throw bad(e.message);
    }
    if (salt.length !== SALT_SIZE) throw bad("the salt is " + salt.length + " bytes, not " + SALT_SIZE);
    if (leaf.length > MAX_LEAF_SIZE) throw bad("its event leaf is " + leaf.length + " bytes, more than the " + MAX_LEAF_SIZE + " a leaf may hold");
    const h = toHex(await sha256(concat(salt, leaf)));
    if (h !== commitment.commitment) throw bad("SHA-256 of the salt and event leaf is " + h + ", not the commitment: the content was changed");
    const l = parseLeaf(leaf);
    if (l.kind !== "event") throw bad("the opened leaf is not an event leaf" + (l.notLeaf ? ": " + l.notLeaf : ""));
    if (l.received !== commitment.received || l.source !== commitment.source) {
      throw bad("the event leaf says received " + l.received + " from " + JSON.stringify(l.source) + ", the commitment leaf " + commitment.received + " from " + JSON.stringify(commitment.source));
    }
    return l;
  }

  const MAX_JSON_DEPTH = 64; // checkpoint.MaxJSONDepth
  const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
  const RECEIVED = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.[0-9]{9}Z$/;

  // leafProblem says why a parsed leaf o, of text s, is not a canonical
  // event leaf, or "" when it is one.
  function leafProblem(o, s) {
    for (const k of Object.keys(o)) {
      if (!["event", "idempotency_key", "received", "source", "v"].includes(k)) return "unknown member " + JSON.stringify(k);
    }
    if (o.v !== 1) return "unsupported version";
    if (!o.event || typeof o.event !== "object" || Array.isArray(o.event)) return "event is not an object";
    if (typeof o.source !== "string") return "no source";
    if ("idempotency_key" in o && (typeof o.idempotency_key !== "string" || o.idempotency_key === "")) return "bad idempotency_key";
    const rp = receivedProblem(o.received);
    if (rp !== "") return rp;
    if (canonicalJSON(o, 0) !== s) return "not in canonical form (RFC 8785), or not I-JSON";
    return "";
  }

  // receivedProblem says why a leaf's received is not a time in
  // checkpoint.ReceivedFormat, or "" when it is one.
  function receivedProblem(received) {
    const m = typeof received === "string" ? RECEIVED.exec(received) : null;
    if (!m) return "received is not a time of the form 2006-01-02T15:04:05.000000000Z";
    const [y, mo, d, h, mi, sec] = m.slice(1).map(Number);
    const t = new Date(0);
    t.setUTCFullYear(y, mo - 1, d);
    t.setUTCHours(h, mi, sec, 0);
    if (t.getUTCFullYear() !== y || t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d || t.getUTCHours() !== h || t.getUTCMinutes() !== mi || t.getUTCSeconds() !== sec) {
      return "received is not a valid time";
    }
    return "";
  }

  // canonicalJSON is the RFC 8785 form of a parsed value, or null when it
  // is not I-JSON (a lone surrogate) or nests deeper than the Go code
  // accepts. JSON.stringify writes strings and numbers as RFC 8785 does.
  function canonicalJSON(v, depth) {
    if (v === null || typeof v === "boolean" || typeof v === "number") return JSON.stringify(v);
    if (typeof v === "string") return LONE_SURROGATE.test(v) ? null : JSON.stringify(v);
    if (depth >= MAX_JSON_DEPTH) return null;
    const parts = [];
    if (Array.isArray(v)) {
      for (const x of v) {
        const c = canonicalJSON(x, depth + 1);
        if (c === null) return null;
        parts.push(c);
      }
      return "[" + parts.join(",") + "]";
    }
    for (const k of Object.keys(v).sort()) {
      const c = canonicalJSON(v[k], depth + 1);
      if (c === null || LONE_SURROGATE.test(k)) return null;
      parts.push(JSON.stringify(k) + ":" + c);
    }
    return "{" + parts.join(",") + "}";
  }

  // checkEntry runs the whole check of entry index against a pinned policy,
  // calling step(name, status, detail) as each step passes ("pass"), warns
  // ("warn") or fails ("fail"). io holds the fetchers:
  //   checkpoint()            -> the signed checkpoint text
  //   tile(level, index, w)   -> hash tile bytes
  //   bundle(index, w)        -> entry bundle bytes
  // Returns {ok, checkpoint, cosigners, leaf}. It never throws: a failure is
  // a failed step.
  async function checkEntry(policy, index, io, step) {
    const res = { ok: false };
    let v;
    try {
      v = await verifyCheckpoint(policy, await io.checkpoint());
    } catch (e) {
      step("signature", "fail", "the checkpoint's log signature: " + e.message);
      return res;
    }
    const cp = v.checkpoint;
    res.checkpoint = cp;
    res.cosigners = v.cosigners;
    step("signature", "pass", "the checkpoint (" + cp.origin + ", size " + cp.size + ", root " + toHex(cp.hash) + ") is signed by the log's key " + v.logKey.id + " (Ed25519)");
    const names = Array.from(v.cosigners.entries()).map(([n, c]) => n + " at " + new Date(c.time * 1000).toISOString());
    if (!v.quorumMet) {
      step("quorum", "fail", "quorum " + describeQuorum(policy) + " not met: cosigned by " + (names.length ? names.join(", ") : "no witness of the policy"));
      return res;
    }
    step("quorum", "pass", policy.quorum === "none"
      ? "the policy asks for no witness (quorum none): nothing vouches that others see the same log"
      : "quorum " + describeQuorum(policy) + " met: cosigned by " + names.join(", "));
    if (cp.size > BigInt(Number.MAX_SAFE_INTEGER)) {
      step("leaf", "fail", "the tree size is too large for this page");
      return res;
    }
    const size = Number(cp.size);
    if (!(index >= 0 && index < size)) {
      step("leaf", "fail", "entry " + index + " is not in this checkpoint, which covers entries 0 to " + (size - 1) + (size === 0 ? " (none)" : ""));
      return res;
    }
    let lh;
    try {
      const b = Math.floor(index / TILE_WIDTH);
      const entries = parseBundle(await io.bundle(b, bundleWidth(b, size)));
      const e = entries[index % TILE_WIDTH];
      if (!e) throw malformed("entry bundle " + entriesPath(b, bundleWidth(b, size)) + " has " + entries.length + " entries, not " + (index % TILE_WIDTH + 1));
      res.leaf = parseLeaf(e);
      lh = await leafHash(e);
      const what = res.leaf.kind === "commitment"
        ? ", a commitment leaf (received " + res.leaf.received + " from " + JSON.stringify(res.leaf.source) + ", commitment " + res.leaf.commitment + "): the tree holds the commitment to the event, not the event,"
        : res.leaf.kind === "erasure" ? ", an erasure leaf," : "";
      step("leaf", "pass", "entry " + index + " (" + e.length + " bytes)" + what + " fetched from " + entriesPath(b, bundleWidth(b, size)) + "; leaf hash SHA-256(0x00 || entry) = " + toHex(lh));
    } catch (e) {
      step("leaf", "fail", "the entry: " + e.message);
      return res;
    }
    try {
      const reader = new TileReader(size, io.tile);
      const root = await rootFromTiles(size, index, lh, reader);
      if (!equalBytes(root, cp.hash)) {
        step("root", "fail", "the root recomputed from the entry and the tiles (" + reader.fetched.join(", ") + ") is " + toHex(root) + ", not the checkpoint's " + toHex(cp.hash) + ": the log served an entry or a tile that is not in the tree it signed");
        return res;
      }
      step("root", "pass", "the root recomputed from the entry and " + reader.fetched.length + " tile(s) (" + reader.fetched.join(", ") + ") equals the checkpoint's root " + toHex(cp.hash));
    } catch (e) {
      step("root", "fail", "recomputing the root: " + e.message);
      return res;
    }
    res.ok = true;
    return res;
  }

  root.TidemarkVerify = {
    VerifyError, sha256, b64decode, b64encode, toHex, utf8, equalBytes,
    parseVKey, parseCheckpoint, parseSignedNote, verifyLogSignature, verifyCosignatures,
    parsePolicy, quorumSatisfied, quorumCosignedBy, describeQuorum, verifyCheckpoint,
    tilePath, entriesPath, bundleWidth, parseBundle, leafHash, nodeHash, TileReader, rootFromTiles,
    parseLeaf, erasureCovers, verifyOpening, checkEntry, KEY_ED25519, KEY_COSIGNATURE_V1,
  };
})(globalThis);
