// Tidemark's web page: status, entries, search, the check of an entry, and
// the pinned policy. The checks themselves are in verify.js.
//
// Everything the log sends is hostile data (events are written by whoever
// can post): this file writes it into the page with textContent only.
(function () {
  "use strict";
  const V = globalThis.TidemarkVerify;
  const PAGE = 25; // entries per page
  const $ = (id) => document.getElementById(id);

  // el builds an element with attributes and children (strings become text
  // nodes, never markup).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }
  function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
    return e;
  }
  // msg sets a view's message (a live region): left alone when unchanged,
  // so that a refresh does not make screen readers say it again.
  function msg(id, text, kind) {
    const e = $(id);
    if (e.textContent !== (text || "")) e.textContent = text || "";
    if (e.dataset.kind !== (kind || "")) e.dataset.kind = kind || "";
  }
  // setText sets an element's text, and its data-status when given, only
  // where they change: a refresh leaves alone what did not, and so the
  // user's selection in it.
  function setText(e, text, status) {
    if (typeof e === "string") e = $(e);
    if (e.textContent !== text) e.textContent = text;
    if (status !== undefined && e.dataset.status !== status) e.dataset.status = status;
  }

  // ---- The log: its URL, the read token, fetching ----

  const state = { log: "", token: "" };

  function normalizeLog(u) {
    u = (u || "").trim();
    if (!u) return "";
    const url = new URL(u, location.href);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("the log URL must be http or https");
    url.search = "";
    url.hash = "";
    let s = url.toString();
    if (!s.endsWith("/")) s += "/";
    return s;
  }

  function initLog() {
    const params = new URLSearchParams(location.search);
    let log = params.get("log") || "";
    if (!log && (location.protocol === "http:" || location.protocol === "https:")) {
      log = new URL(".", location.href).toString();
    }
    if (!log) log = localStorage.getItem("tidemark.lastLog") || "";
    try {
      state.log = normalizeLog(log);
    } catch (e) {
      state.log = "";
    }
    state.token = sessionStorage.getItem("tidemark.token:" + state.log) || "";
    $("log-url").value = state.log;
    $("read-token").value = state.token;
  }

  class HTTPError extends Error {
    constructor(status, message, url) {
      super(message);
      this.status = status;
      this.url = url;
    }
  }

  // get fetches path from the log. auth sends the read token.
  async function get(path, { auth = false, accept } = {}) {
    if (!state.log) throw new HTTPError(0, "no log URL: enter one above", "");
    const url = new URL(path, state.log).toString();
    const headers = {};
    if (auth && state.token) headers.Authorization = "Bearer " + state.token;
    if (accept) headers.Accept = accept;
    let resp;
    try {
      resp = await fetch(url, { headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" });
    } catch (e) {
      throw new HTTPError(0, "could not reach " + url + " (the log is down, the URL is wrong, or the log does not let pages from other origins read it: CORS)", url);
    }
    if (!resp.ok) {
      let detail = "";
      try {
        const t = await resp.text();
        try {
          const j = JSON.parse(t);
          detail = j.message || j.error || "";
        } catch (e) {
          detail = t.slice(0, 200);
        }
      } catch (e) { /* none */ }
      let m = url + " answered " + resp.status + (detail ? ": " + detail : "");
      if (resp.status === 401) m += " (this log needs a read token: enter it above)";
      throw new HTTPError(resp.status, m, url);
    }
    return resp;
  }
  async function getBytes(path, opts) {
    return new Uint8Array(await (await get(path, opts)).arrayBuffer());
  }
  async function getText(path, opts) {
    return V.utf8(await getBytes(path, opts));
  }
  async function getJSON(path, opts) {
    return JSON.parse(await getText(path, Object.assign({ accept: "application/json" }, opts)));
  }

  // A partial tile or bundle may be gone once the full one exists: then
  // the full one's prefix is the same data.
  async function getTile(level, index, width) {
    try {
      return await getBytes(V.tilePath(level, index, width));
    } catch (e) {
      if (e.status !== 404 || width >= 256) throw e;
      return (await getBytes(V.tilePath(level, index, 256))).slice(0, width * 32);
    }
  }
  async function getBundle(index, width) {
    try {
      return await getBytes(V.entriesPath(index, width), { auth: true });
    } catch (e) {
      if (e.status !== 404 || width >= 256) throw e;
      const full = V.parseBundle(await getBytes(V.entriesPath(index, 256), { auth: true }));
      // Re-encode the first width entries, as the partial bundle would be.
      const parts = full.slice(0, width);
      let n = 0;
      for (const p of parts) n += 2 + p.length;
      const out = new Uint8Array(n);
      let o = 0;
      for (const p of parts) {
        out[o] = p.length >> 8;
        out[o + 1] = p.length & 0xff;
        out.set(p, o + 2);
        o += 2 + p.length;
      }
      return out;
    }
  }

  // ---- The pinned policy ----

  const policyKey = () => "tidemark.policy.v1:" + state.log;

  function pinnedPolicy() {
    try {
      const p = JSON.parse(localStorage.getItem(policyKey()) || "null");
      return p && typeof p.text === "string" ? p : null;
    } catch (e) {
      return null;
    }
  }
  function pin(text, how) {
    localStorage.setItem(policyKey(), JSON.stringify({ text, how, at: new Date().toISOString() }));
  }

  function howText(p) {
    return p.how === "pasted" ? "by pasting" : p.how === "served" ? "from the log on request" : "on first use";
  }

  // ensurePolicy returns the parsed pinned policy, pinning the served one on
  // first use. It reports {policy, pinned, served, firstUse, differs,
  // servedError}.
  async function ensurePolicy() {
    const r = { firstUse: false, differs: false, served: null, servedError: "" };
    try {
      r.served = await getText("v1/policy");
    } catch (e) {
      r.servedError = e.message;
    }
    let p = pinnedPolicy();
    if (!p) {
      if (r.served === null) throw new Error("no policy is pinned for this log, and the log's policy could not be fetched: " + r.servedError);
      await V.parsePolicy(r.served); // refuse to pin a policy we cannot read
      pin(r.served, "first use");
      p = pinnedPolicy();
      r.firstUse = true;
    }
    r.pinned = p;
    r.policy = await V.parsePolicy(p.text);
    r.differs = r.served !== null && r.served !== p.text;
    return r;
  }

  // ---- Formatting ----

  function ago(ms) {
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 0) return "in the future (" + -s + " s ahead of this computer's clock)";
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }
  const iso = (sec) => new Date(sec * 1000).toISOString().replace(".000Z", "Z");

  function eventSummary(ev) {
    const pick = (k) => (typeof ev[k] === "string" || typeof ev[k] === "number" ? String(ev[k]) : "");
    return { actor: pick("actor"), action: pick("action"), resource: pick("resource"), outcome: pick("outcome") };
  }

  // eventFields renders an event's actor, action, resource and outcome,
  // and then the fields of more (pairs of name and text), as a list.
  function eventFields(event, more) {
    const s = event ? eventSummary(event) : {};
    const dl = el("dl", { class: "kv" });
    const add = (k, v) => {
      if (v !== "" && v !== undefined) dl.append(el("div", {}, el("dt", { text: k }), el("dd", { text: v, "data-field": k })));
    };
    for (const k of ["actor", "action", "resource", "outcome"]) add(k, s[k]);
    for (const [k, v] of more) add(k, v);
    return dl;
  }

  // fmtRanges says an erasure's half-open ranges [from,to) as entries.
  function fmtRanges(entries) {
    return entries.map((r) => (r[1] - r[0] === 1 ? "#" + r[0] : "#" + r[0] + " to #" + (r[1] - 1))).join(", ");
  }

  // entryItem renders one entry (an event leaf, a commitment leaf, an
  // erasure leaf, a search result, or raw bytes) as a list item. A
  // commitment leaf's content is shown later, by showContent.
  function entryItem(index, leaf) {
    const li = el("li", { class: "entry", "data-index": index, "data-kind": leaf.kind });
    const head = el("div", { class: "entry-head" },
      el("span", { class: "idx", text: "#" + index }),
      el("a", { href: "#check?index=" + index, class: "check-link", "aria-label": "Check entry " + index }, "Check"));
    li.append(head);
    if (leaf.kind === "event") {
      li.append(eventFields(leaf.event, [["received", leaf.received], ["source", leaf.source]]));
      li.append(el("details", {}, el("summary", { text: "The whole event" }),
        el("pre", { class: "json", text: JSON.stringify(leaf.event, null, 2) })));
    } else if (leaf.kind === "commitment") {
      li.classList.add("commitment");
      li.append(el("p", { class: "kindinfo", text: "An event, committed to: the log's tree holds a salted hash of it (erasable log)." }));
      li.append(eventFields(null, [["received", leaf.received], ["source", leaf.source]]));
      const dl = li.querySelector("dl");
      dl.append(el("div", {}, el("dt", { text: "commitment" }),
        el("dd", { "data-field": "commitment", title: leaf.commitment }, el("code", { text: leaf.commitment.slice(0, 16) + "…" }))));
      li.append(el("div", { class: "content", "data-content": "wait" }, el("p", { text: "Content: looking for it…" })));
    } else if (leaf.kind === "erasure") {
      li.classList.add("erasure");
      li.append(el("p", { class: "kindinfo", text: "An erasure: the log deleted the contents of these entries; their commitments stay in the tree." }));
      li.append(eventFields(null, [["erased", fmtRanges(leaf.entries)], ["reason", leaf.reason], ["received", leaf.received], ["source", leaf.source]]));
    } else {
      li.classList.add("raw");
      const n = leaf.bytes.length;
      li.append(el("p", { class: "rawinfo", text: "raw entry, " + n + " byte" + (n === 1 ? "" : "s") + (leaf.notLeaf
        ? " (shaped like " + (leaf.claims === "erasure" ? "an erasure" : "a" + (leaf.claims === "commitment" ? " commitment" : "n event")) + " leaf, but not one the log writes: " + leaf.notLeaf + "; its source and time are not the log's)"
        : " (posted to /add, not an event)") }));
      const hex = V.toHex(leaf.bytes.subarray(0, 64)) + (n > 64 ? "…" : "");
      li.append(el("pre", { class: "hex", text: hex }));
      if (leaf.text !== null && leaf.text !== undefined) {
        li.append(el("details", {}, el("summary", { text: "As text" }), el("pre", { class: "json", text: leaf.text })));
      }
    }
    return li;
  }

  // ---- The content of commitment leaves ----

  // openings fetches what the commitment leaves in [from, to) commit to
  // (GET /v1/payloads, with the read token when there is one) and checks
  // each opening here, with WebCrypto, against its commitment leaf (leaves:
  // a Map from index to parsed leaf). It resolves to a Map from index to
  // {state: "opened", event} | {state: "erased"} | {state: "bad", error},
  // or, when the page cannot read the log's events, to {hidden: why}.
  async function openings(from, to, leaves) {
    const out = new Map();
    let text;
    try {
      text = await getText("v1/payloads?from=" + from + "&to=" + to, { auth: true, accept: "application/x-ndjson" });
    } catch (e) {
      return {
        hidden: e.status === 401 || e.status === 403
          ? "this log lets only holders of a read token read events" + (state.token ? ", and the token entered above is not one" : ": enter one above")
          : e.status === 404 ? "this log serves no openings (/v1/payloads)" : e.message,
      };
    }
    for (const line of text.split("\n")) {
      if (line === "") continue;
      let p;
      try {
        p = JSON.parse(line);
      } catch (e) {
        continue;
      }
      const i = Number(p.index);
      const leaf = leaves.get(i);
      if (!leaf || leaf.kind !== "commitment" || out.has(i)) continue;
      if (p.erased === true) {
        out.set(i, { state: "erased" });
        continue;
      }
      try {
        const ev = await V.verifyOpening(leaf, p.opening);
        out.set(i, { state: "opened", event: ev.event, idempotencyKey: ev.idempotencyKey });
      } catch (e) {
        out.set(i, { state: "bad", error: e.message });
      }
    }
    return out;
  }

  // findErasure returns the index of the erasure leaf that covers entry
  // index, looking in bundles (a Map from bundle number to its entries)
  // and fetching up to 4 more bundles after it, or -1.
  async function findErasure(index, bundles, size) {
    let fetched = 0;
    for (let b = Math.floor(index / 256); b * 256 < size; b++) {
      if (!bundles.has(b)) {
        if (fetched++ >= 4) break;
        try {
          bundles.set(b, V.parseBundle(await getBundle(b, V.bundleWidth(b, size))));
        } catch (e) {
          break;
        }
      }
      const es = bundles.get(b);
      if (!erasuresIn.has(es)) {
        const found = [];
        es.forEach((e, k) => {
          const l = V.parseLeaf(e);
          if (l.kind === "erasure") found.push([b * 256 + k, l]);
        });
        erasuresIn.set(es, found);
      }
      for (const [i, l] of erasuresIn.get(es)) {
        if (i > index && V.erasureCovers(l, index)) return i;
      }
    }
    return -1;
  }
  const erasuresIn = new WeakMap(); // a bundle's entries -> its erasure leaves, [index, leaf]

  // showContent fills in the content of the commitment leaf shown in li:
  // st is an answer of openings, or {state: "hidden", why}. erasureAt is
  // the erasure's index, or -1 when not known.
  function showContent(li, st, erasureAt) {
    const box = li.querySelector(".content");
    if (!box) return;
    clear(box);
    box.dataset.content = st.state;
    if (st.state === "opened") {
      box.append(el("p", { "data-status": "pass", text: "Content checked in this browser: SHA-256 of the salt and the event leaf equals the commitment, and the event leaf says the same time and source." }));
      box.append(eventFields(st.event, st.idempotencyKey ? [["idempotency key", st.idempotencyKey]] : []));
      box.append(el("details", {}, el("summary", { text: "The whole event" }),
        el("pre", { class: "json", text: JSON.stringify(st.event, null, 2) })));
    } else if (st.state === "erased") {
      const p = el("p", { class: "erased", text: "Erased" });
      if (erasureAt >= 0) p.append(" by the erasure at ", el("a", { href: "#check?index=" + erasureAt, text: "entry #" + erasureAt }));
      p.append(": the log deleted the event and its salt; the commitment stays, so the entry still proves that an event was logged here.");
      box.append(p);
    } else if (st.state === "bad") {
      box.append(el("p", { "data-status": "fail", text: "FAILED: the content the log serves for this entry does not match its commitment: " + st.error }));
    } else {
      box.append(el("p", { class: "rawinfo", text: "Content not shown (erasable log): " + st.why + "." }));
    }
  }

  // fillContents shows the content of the commitment leaves among
  // leaves (a Map from index to parsed leaf) in [from, to), in the items of
  // list.
  async function fillContents(seq, list, leaves, from, to, bundles, size) {
    if (![...leaves.values()].some((l) => l.kind === "commitment")) return null;
    const got = await openings(from, to, leaves);
    if (seq !== renderSeq) return null;
    for (const [i, leaf] of leaves) {
      if (leaf.kind !== "commitment") continue;
      const li = list.querySelector('li[data-index="' + i + '"]');
      if (!li) continue;
      let st;
      if (got.hidden !== undefined) st = { state: "hidden", why: got.hidden };
      else st = got.get(i) || { state: "hidden", why: "the log sent no opening for it" };
      const at = st.state === "erased" ? await findErasure(i, bundles, size) : -1;
      if (seq !== renderSeq) return null;
      showContent(li, st, at);
    }
    return got;
  }

  // ---- Views ----

  let renderSeq = 0; // a newer render makes older async work stop writing

  // renderStatus shows the status view. A refresh (every REFRESH_MS while
  // the view is shown) changes only what changed: no "Loading…", no focus
  // moved, open details left open.
  async function renderStatus(seq, params, refresh) {
    if (!refresh) {
      msg("status-msg", "Loading…");
      for (const id of ["st-origin", "st-size", "st-age", "st-verified"]) setText(id, "…", "");
    }
    let status = null, cpText;
    try {
      status = await getJSON("v1/status");
      cpText = status.checkpoint;
    } catch (e) {
      if (e.status !== 404) {
        if (seq !== renderSeq) return;
        msg("status-msg", e.message, "fail");
      }
      try {
        cpText = await getText("checkpoint");
      } catch (e2) {
        if (seq !== renderSeq) return;
        msg("status-msg", e2.message, "fail");
        return;
      }
    }
    if (seq !== renderSeq) return;
    msg("status-msg", status ? "" : "This log has no /v1/status: showing its checkpoint alone, without the witnesses' state or the append rate.", status ? "" : "warn");
    setText("st-checkpoint", cpText || "");
    let cp = null, note = null;
    try {
      note = V.parseSignedNote(cpText);
      cp = V.parseCheckpoint(note.body);
    } catch (e) {
      setText("st-verified", "FAILED: the checkpoint is malformed: " + e.message, "fail");
    }
    setText("st-origin", cp ? cp.origin : (status && status.origin) || "?");
    setText("st-size", cp ? cp.size.toString() + " entries" : "?");
    const published = status && status.published ? Date.parse(status.published) : NaN;
    let verified = null;
    if (cp) {
      try {
        const pol = await ensurePolicy();
        verified = await V.verifyCheckpoint(pol.policy, cpText);
        const names = Array.from(verified.cosigners.entries()).map(([n, c]) => n + " at " + iso(c.time));
        const ok = verified.quorumMet;
        if (seq !== renderSeq) return;
        setText("st-verified", (ok ? "PASSED: " : "FAILED: ") + "signed by the log's key " + verified.logKey.id + "; quorum " + V.describeQuorum(pol.policy) + (ok ? " met" : " NOT met") + (names.length ? ": cosigned by " + names.join(", ") : "") + (pol.differs ? ". Warning: the policy the log serves now differs from the pinned one (see Policy)." : ""),
          ok ? (pol.differs ? "warn" : "pass") : "fail");
        await renderWitnesses(status, pol.policy, seq);
      } catch (e) {
        if (seq !== renderSeq) return;
        setText("st-verified", "FAILED: " + e.message, "fail");
        await renderWitnesses(status, null, seq);
      }
    }
    if (seq !== renderSeq) return;
    if (!isNaN(published)) {
      setText("st-age", "published " + ago(published) + " (" + status.published + ")");
    } else if (verified && verified.cosigners.size > 0) {
      const newest = Math.max(...Array.from(verified.cosigners.values(), (c) => c.time));
      setText("st-age", "cosigned " + ago(newest * 1000) + " (" + iso(newest) + ")");
    } else {
      setText("st-age", "unknown: the log did not say when it published it, and no witness cosigned it");
    }
    renderRate(status ? status.rate : null);
  }

  // renderWitnesses fills the witnesses' table: it builds a new body and
  // then changes only the cells that differ from the shown ones.
  async function renderWitnesses(status, policy, seq) {
    const tbody = document.createElement("tbody");
    await fillWitnesses(tbody, status, policy, seq);
    if (seq !== renderSeq) return;
    const old = $("st-witnesses").querySelector("tbody");
    const same = old.rows.length === tbody.rows.length && Array.from(old.rows).every((r, i) => r.cells.length === tbody.rows[i].cells.length);
    if (!same) {
      old.replaceWith(tbody);
      return;
    }
    Array.from(tbody.rows).forEach((r, i) => {
      Array.from(r.cells).forEach((c, j) => {
        const o = old.rows[i].cells[j];
        if (!o.isEqualNode(c)) o.replaceWith(c.cloneNode(true));
      });
      const or = old.rows[i];
      if (or.dataset.witness !== r.dataset.witness) or.dataset.witness = r.dataset.witness || "";
    });
  }

  async function fillWitnesses(tbody, status, policy, seq) {
    const rows = status && Array.isArray(status.witnesses) ? status.witnesses : [];
    const names = new Set(rows.map((w) => String(w.name)));
    if (policy) {
      for (const w of policy.witnesses) {
        if (!names.has(w.name)) rows.push({ name: w.name, url: w.url, error: status ? "the log reported nothing about this witness" : "unknown: this log has no /v1/status" });
      }
    }
    if (rows.length === 0) {
      tbody.append(el("tr", {}, el("td", { colspan: 4, text: status ? "The policy names no witness." : "Unknown: this log has no /v1/status." })));
      return;
    }
    for (const w of rows) {
      const name = String(w.name || "");
      const tr = el("tr", { "data-witness": name });
      const size = el("td", { "data-label": "Size it last cosigned" }), when = el("td", { "data-label": "When" }), check = el("td", { "data-label": "Check" });
      tr.append(el("th", { scope: "row" }, el("span", { text: name }), w.url ? el("br") : null, w.url ? el("span", { class: "hint", text: String(w.url) }) : null), size, when, check);
      tbody.append(tr);
      const pw = policy ? policy.witnesses.find((x) => x.name === name) : null;
      if (!w.checkpoint) {
        size.textContent = "—";
        when.textContent = "—";
        check.textContent = w.error ? "no checkpoint: " + w.error : "no checkpoint";
        check.dataset.status = "warn";
        continue;
      }
      if (!pw) {
        size.textContent = "—";
        when.textContent = "—";
        check.textContent = policy ? "not a witness of the pinned policy" : "not checked: no usable pinned policy";
        check.dataset.status = "warn";
        continue;
      }
      try {
        const note = V.parseSignedNote(String(w.checkpoint));
        const cp = V.parseCheckpoint(note.body);
        if (cp.origin !== policy.origin) throw new Error("a checkpoint of another log (" + cp.origin + ")");
        const cos = await V.verifyCosignatures(note, [pw]);
        const c = cos.get(name);
        if (!c) throw new Error("the checkpoint carries no cosignature by this witness's key " + pw.key.id);
        if (seq !== renderSeq) return;
        size.textContent = cp.size.toString();
        when.textContent = iso(c.time) + " (" + ago(c.time * 1000) + ")";
        check.textContent = "PASSED: cosignature verified" + (w.error ? "; last error: " + w.error : "");
        check.dataset.status = w.error ? "warn" : "pass";
      } catch (e) {
        size.textContent = "—";
        when.textContent = "—";
        check.textContent = "FAILED: " + e.message;
        check.dataset.status = "fail";
      }
    }
  }

  // ---- The append-rate chart ----

  // rateIntervals turns the size samples [{time, size}] into intervals
  // {t0, t1, n, rate}: n entries appended between two samples, rate per
  // second. An interval shorter than 2 s (the sample taken at the request,
  // just after a periodic one) is merged into the one before it, so that a
  // handful of entries in a split second does not draw a spike.
  function rateIntervals(samples) {
    const pts = [];
    for (const s of samples) {
      const t = Date.parse(s && s.time), n = Number(s && s.size);
      if (isFinite(t) && Number.isSafeInteger(n) && n >= 0) pts.push({ t, n });
    }
    const out = [];
    for (let i = 1; i < pts.length; i++) {
      const a = pts[i - 1], b = pts[i];
      if (!(b.t > a.t) || b.n < a.n) continue;
      const prev = out[out.length - 1];
      if (b.t - a.t < 2000 && prev && prev.t1 === a.t) {
        prev.t1 = b.t;
        prev.n += b.n - a.n;
      } else {
        out.push({ t0: a.t, t1: b.t, n: b.n - a.n });
      }
    }
    for (const iv of out) iv.rate = iv.n / ((iv.t1 - iv.t0) / 1000);
    return out;
  }

  // niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= v * (1 - 1e-9)) return m * e;
    return 10 * e;
  }
  const fmtRate = (r) => (r >= 100 ? Math.round(r).toString() : r >= 10 ? String(Math.round(r * 10) / 10) : String(Math.round(r * 100) / 100));
  // fmtAgo says a span before now: "-40 s", "-5 min", "-1 h".
  const fmtAgo = (s) => (s < 60 ? "-" + s + " s" : s < 3600 || s % 3600 ? "-" + Math.round(s / 60) + " min" : "-" + s / 3600 + " h");
  const fmtSpan = (ms) => {
    const s = Math.round(ms / 1000);
    return s < 120 ? s + " s" : Math.round(s / 60) + " min";
  };
  const clock = (ms) => new Date(ms).toISOString().slice(11, 19) + "Z";
  const TICK_STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600]; // seconds

  let lastRate = null; // what renderRate last drew: redrawn when the width changes

  // renderRate draws the append rate as a time chart: x from the first
  // sample to now, with ticks counted back from now; each interval between
  // two samples a bar over its span, as high as its entries per second; y
  // from 0 to a round maximum, labelled. The SVG is one image to assistive
  // technology (role="img", a <title> and an aria-label that summarise it);
  // the same figures are in the caption and the table below it.
  function renderRate(samples) {
    const box = $("rate-chart");
    const sum = $("rate-summary");
    const details = $("rate-details");
    const ivs = Array.isArray(samples) ? rateIntervals(samples) : [];
    if (ivs.length === 0) {
      lastRate = null;
      clear(box);
      details.hidden = true;
      setText(sum, Array.isArray(samples) ? "Not enough samples yet: the log samples its size every few seconds." : "Unknown: this log has no /v1/status.");
      return;
    }
    const start = ivs[0].t0, now = ivs[ivs.length - 1].t1, span = now - start;
    const W = Math.max(260, Math.min(768, Math.floor(box.clientWidth || 600)));
    const H = 200, left = 44, right = 14, top = 26, bottom = 30;
    const pw = W - left - right, ph = H - top - bottom;
    const peak = ivs.reduce((m, iv) => (iv.rate > m.rate ? iv : m), ivs[0]);
    const ymax = niceCeil(peak.rate);
    const X = (t) => left + ((t - start) / span) * pw;
    const Y = (r) => top + ph - (Math.min(r, ymax) / ymax) * ph;
    const total = ivs.reduce((n, iv) => n + iv.n, 0);
    const last = ivs[ivs.length - 1];
    const summary = total + " entries appended in the last " + fmtSpan(span) + " (since " + clock(start) + "): " +
      fmtRate(total / (span / 1000)) + " entries/s on average, peak " + fmtRate(peak.rate) + " entries/s (" + clock(peak.t0) + " to " + clock(peak.t1) + "), latest " +
      fmtRate(last.rate) + " entries/s (the last " + fmtSpan(last.t1 - last.t0) + ").";

    const NS = "http://www.w3.org/2000/svg";
    const svgEl = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
      if (text !== undefined) e.textContent = text;
      return e;
    };
    const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", class: "rate", "aria-label": "Append rate chart. " + summary });
    svg.append(svgEl("title", {}, "Append rate, entries per second, over the last " + fmtSpan(span)));
    // The y axis: gridlines at 0, half and the maximum, the maximum labelled
    // with its unit above the plot.
    for (const f of [0, 0.5, 1]) {
      const y = Y(ymax * f);
      svg.append(svgEl("line", { x1: left, x2: W - right, y1: y, y2: y, class: f === 0 ? "axis" : "grid" }));
      if (f !== 1) svg.append(svgEl("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "label" }, fmtRate(ymax * f)));
    }
    svg.append(svgEl("text", { x: 4, y: top - 10, "text-anchor": "start", class: "label ymax" }, fmtRate(ymax) + " entries/s"));
    svg.append(svgEl("line", { x1: left, x2: left, y1: top, y2: top + ph, class: "axis" }));
    // The x axis: ticks counted back from now, as many as fit.
    const maxTicks = Math.max(2, Math.floor(pw / 64));
    const step = TICK_STEPS.find((s) => (span / 1000) / s <= maxTicks) || Math.ceil(span / 1000 / maxTicks / 3600) * 3600;
    const ticks = [];
    for (let k = 0; now - k * step * 1000 >= start - 1; k++) ticks.push(k);
    for (const k of ticks) {
      const x = X(now - k * step * 1000);
      svg.append(svgEl("line", { x1: x, x2: x, y1: top + ph, y2: top + ph + 5, class: "axis" }));
      if (k > 0) svg.append(svgEl("line", { x1: x, x2: x, y1: top, y2: top + ph, class: "grid" }));
      // Labels that would crowd "now" or run off the left edge are left out.
      if (k > 0 && x - left < 18) continue;
      svg.append(svgEl("text", { x: k === 0 ? W - right : x, y: H - 8, "text-anchor": k === 0 ? "end" : "middle", class: "label" }, k === 0 ? "now" : fmtAgo(k * step)));
    }
    // One bar per interval, over its span; drawn as one path.
    let d = "";
    for (const iv of ivs) {
      if (!(iv.rate > 0)) continue;
      let x0 = X(iv.t0), x1 = X(iv.t1);
      if (x1 - x0 > 3) x1 -= 1; // a gap between wide bars
      if (x1 - x0 < 1) x1 = x0 + 1;
      const y = Y(iv.rate);
      d += "M" + x0.toFixed(1) + " " + (top + ph) + "V" + y.toFixed(1) + "H" + x1.toFixed(1) + "V" + (top + ph) + "Z";
    }
    if (d) svg.append(svgEl("path", { d, class: "bar" }));
    clear(box).append(svg);
    setText(sum, summary);
    lastRate = { samples, width: box.clientWidth };

    // The figures: the entries of each tick's period (an interval counts in
    // the period it ends in).
    const periods = new Map();
    for (const iv of ivs) {
      const p = Math.min(ticks.length - 1, Math.floor((now - iv.t1) / (step * 1000)));
      if (!periods.has(p)) periods.set(p, []);
      periods.get(p).push(iv);
    }
    const rows = [];
    for (const [p, inP] of periods) {
      const t0 = inP[0].t0, t1 = inP[inP.length - 1].t1, n = inP.reduce((s, iv) => s + iv.n, 0);
      rows.push([fmtAgo((p + 1) * step) + " to " + (p === 0 ? "now" : fmtAgo(p * step)) + " (" + clock(t0) + " to " + clock(t1) + ")", String(n), fmtRate(n / ((t1 - t0) / 1000))]);
    }
    const tbody = $("rate-table").querySelector("tbody");
    const text = rows.map((r) => r.join("\t")).join("\n");
    if (tbody.dataset.text !== text) {
      clear(tbody);
      for (const r of rows) tbody.append(el("tr", {}, el("th", { scope: "row", text: r[0] }), el("td", { text: r[1] }), el("td", { text: r[2] })));
      tbody.dataset.text = text;
    }
    details.hidden = false;
  }

  async function renderEntries(seq, params) {
    const list = clear($("entries-list"));
    clear($("entries-pager"));
    clear($("entries-pager-top"));
    msg("entries-msg", "Loading…");
    let size;
    try {
      const note = V.parseSignedNote(await getText("checkpoint"));
      size = Number(V.parseCheckpoint(note.body).size);
    } catch (e) {
      if (seq === renderSeq) msg("entries-msg", "The checkpoint: " + e.message, "fail");
      return;
    }
    if (size === 0) {
      msg("entries-msg", "The log is empty.");
      return;
    }
    let before = parseInt(params.get("before") || "", 10);
    if (!(before >= 0) || before >= size) before = size - 1;
    const first = Math.max(0, before - PAGE + 1);
    const bundles = new Map();
    try {
      for (let b = Math.floor(before / 256); b >= Math.floor(first / 256); b--) {
        bundles.set(b, V.parseBundle(await getBundle(b, V.bundleWidth(b, size))));
      }
    } catch (e) {
      if (seq === renderSeq) msg("entries-msg", "The entry bundles: " + e.message, "fail");
      return;
    }
    if (seq !== renderSeq) return;
    list.setAttribute("start", String(before));
    const leaves = new Map();
    for (let i = before; i >= first; i--) {
      const e = bundles.get(Math.floor(i / 256))[i % 256];
      if (!e) continue;
      const leaf = V.parseLeaf(e);
      leaves.set(i, leaf);
      list.append(entryItem(i, leaf));
    }
    msg("entries-msg", "Entries " + before + " to " + first + " of " + size + " (the tree's size at the latest checkpoint).");
    await fillContents(seq, list, leaves, first, before + 1, bundles, size);
    for (const pager of [$("entries-pager-top"), $("entries-pager")]) {
      const links = [];
      if (before < size - 1) {
        links.push(el("a", { href: "#entries" }, "Newest"));
        links.push(el("a", { href: "#entries?before=" + Math.min(size - 1, before + PAGE) }, "Newer"));
      }
      if (first > 0) links.push(el("a", { href: "#entries?before=" + (first - 1), rel: "next" }, "Older"));
      pager.append(...links);
    }
  }

  const SEARCH_FIELDS = ["actor", "action", "resource", "source", "outcome", "since", "until", "q"];

  async function renderSearch(seq, params, cursor) {
    const form = $("search-form");
    for (const f of SEARCH_FIELDS) form.elements[f].value = params.get(f) || "";
    const list = $("search-list");
    if (!cursor) clear(list);
    $("search-more").hidden = true;
    const q = new URLSearchParams();
    for (const f of SEARCH_FIELDS) if (params.get(f)) q.set(f, params.get(f));
    if (Array.from(q.keys()).length === 0 && !params.has("all")) {
      msg("search-msg", "Fill in one or more fields. The log's search index is a convenience: the results are what the log says; Check proves each one.");
      return;
    }
    q.set("limit", String(PAGE));
    if (cursor) q.set("cursor", cursor);
    msg("search-msg", "Searching…");
    let res;
    try {
      res = await getJSON("v1/search?" + q.toString(), { auth: true });
    } catch (e) {
      if (seq !== renderSeq) return;
      msg("search-msg", e.status === 404 ? "This log offers no search (/v1/search answered 404): it runs an older Tidemark. Entries are still readable under Entries." : e.message, "fail");
      return;
    }
    if (seq !== renderSeq) return;
    const results = Array.isArray(res.results) ? res.results : [];
    for (const r of results) {
      const leaf = { kind: "event", event: r.event && typeof r.event === "object" ? r.event : {}, received: String(r.received || ""), source: String(r.source || "") };
      list.append(entryItem(Number(r.index), leaf));
    }
    const n = list.children.length;
    msg("search-msg", n === 0 ? "No entries match." : n + " match" + (n === 1 ? "" : "es") + ", newest first" + (typeof res.complete_to === "number" ? "; the search index covers the first " + res.complete_to + " entries" : "") + ".");
    if (res.next) {
      const more = $("search-more");
      more.hidden = false;
      more.onclick = () => renderSearch(seq, params, String(res.next));
    }
  }

  const STEPS = [
    ["policy", "Policy pinned"],
    ["signature", "Log signature (Ed25519)"],
    ["quorum", "Witness cosignatures and quorum (cosignature/v1)"],
    ["leaf", "Entry fetched and hashed (SHA-256)"],
    ["root", "Root recomputed from the tiles equals the checkpoint's"],
  ];
  const STATUS_WORD = { pass: "PASSED", fail: "FAILED", warn: "WARNING", wait: "NOT RUN", run: "RUNNING", skip: "NOT CHECKED" };

  async function renderCheck(seq, params) {
    const steps = clear($("check-steps"));
    const verdict = $("check-verdict");
    const entry = clear($("check-entry"));
    verdict.textContent = "";
    verdict.dataset.status = "";
    $("check-proves").hidden = true;
    $("check-proves-commitment").hidden = true;
    const idxText = params.get("index");
    $("check-index").value = idxText || "";
    if (idxText === null || idxText === "") return;
    if (!/^(0|[1-9][0-9]*)$/.test(idxText) || !Number.isSafeInteger(Number(idxText))) {
      verdict.textContent = "Not an entry index: " + idxText;
      verdict.dataset.status = "fail";
      return;
    }
    const index = Number(idxText);
    const items = new Map();
    for (const [k, title] of STEPS) {
      const st = el("span", { class: "st", text: STATUS_WORD.wait });
      const li = el("li", { "data-step": k, "data-status": "wait" }, st, " ", el("strong", { text: title }), el("p", { class: "detail" }));
      items.set(k, li);
      steps.append(li);
    }
    let failed = false, warned = false;
    const step = (k, status, detail) => {
      if (seq !== renderSeq) return;
      const li = items.get(k);
      li.dataset.status = status;
      li.querySelector(".st").textContent = STATUS_WORD[status];
      li.querySelector(".detail").textContent = detail;
      if (status === "fail") failed = true;
      if (status === "warn") warned = true;
    };
    let content = null; // a commitment leaf's content, once looked for
    const finish = () => {
      if (seq !== renderSeq) return;
      for (const li of items.values()) if (li.dataset.status === "wait") li.querySelector(".detail").textContent = "not run: an earlier step failed";
      verdict.dataset.status = failed ? "fail" : warned ? "warn" : "pass";
      const what = content ? "commitment leaf " + index : "entry " + index;
      const said = !content ? "" : content.state === "opened" ? "; the event shown below was checked against its commitment"
        : content.state === "erased" ? "; its event was erased" : "; its content is not shown (erasable log), so only the commitment was checked";
      verdict.textContent = content && content.state === "bad"
        ? "FAILED: commitment leaf " + index + " is in the log, but the content the log serves for it does not match its commitment."
        : failed
          ? "FAILED: entry " + index + " could not be shown to be in the log the witnesses saw."
          : "PASSED: " + what + " is in the log, at a checkpoint a quorum of witnesses cosigned" + said + (warned ? " (see the warning above)." : ".");
      $("check-proves").hidden = failed && !(content && content.state === "bad");
    };
    verdict.textContent = "Checking entry " + index + "…";
    if (!globalThis.crypto || !globalThis.crypto.subtle) {
      step("policy", "fail", "this browser offers no WebCrypto here: crypto.subtle exists only on https pages, http://localhost and file:// pages. Open the page one of those ways.");
      return finish();
    }
    let pol;
    try {
      pol = await ensurePolicy();
    } catch (e) {
      step("policy", "fail", e.message);
      return finish();
    }
    const desc = pol.policy.origin + ", " + pol.policy.logs.length + " log key(s), " + pol.policy.witnesses.length + " witness(es), quorum " + V.describeQuorum(pol.policy);
    if (pol.firstUse) step("policy", "warn", "no policy was pinned for this log: pinned the one it serves now, on first use (" + desc + "). This check trusts the log's policy as served today; compare it with one from someone you trust (Policy).");
    else if (pol.differs) step("policy", "warn", "checking against the policy pinned " + howText(pol.pinned) + " at " + pol.pinned.at + " (" + desc + "); the policy the log serves now DIFFERS from it: the log, or its witnesses, changed, or someone is lying. See Policy.");
    else if (pol.served === null) step("policy", "warn", "checking against the pinned policy (" + desc + "); the log's own policy could not be fetched to compare: " + pol.servedError);
    else step("policy", "pass", "checking against the policy pinned " + howText(pol.pinned) + " at " + pol.pinned.at + " (" + desc + "); the log serves the same policy");
    const res = await V.checkEntry(pol.policy, index, {
      checkpoint: () => getBytes("checkpoint"),
      tile: getTile,
      bundle: getBundle,
    }, step);
    if (res.ok && res.leaf && res.leaf.kind === "commitment" && seq === renderSeq) {
      // A commitment leaf: the steps proved the commitment is in the log;
      // one more checks the content the log serves against it.
      const st = el("span", { class: "st", text: STATUS_WORD.run });
      const li = el("li", { "data-step": "content", "data-status": "run" }, st, " ", el("strong", { text: "Content checked against the commitment (SHA-256)" }), el("p", { class: "detail" }));
      items.set("content", li);
      steps.append(li);
      const size = Number(res.checkpoint.size);
      const got = await openings(index, index + 1, new Map([[index, res.leaf]]));
      content = got.hidden !== undefined ? { state: "hidden", why: got.hidden } : got.get(index) || { state: "hidden", why: "the log sent no opening for it" };
      content.erasureAt = content.state === "erased" ? await findErasure(index, new Map(), size) : -1;
      if (content.state === "opened") step("content", "pass", "the log served the event and its salt, and SHA-256(salt || event leaf) equals the commitment in the entry; the event leaf says the same time and source: the event shown below is the one the log committed to");
      else if (content.state === "bad") step("content", "fail", "the content the log serves does not match the commitment in the entry: " + content.error);
      else if (content.state === "erased") step("content", "skip", "the event was erased" + (content.erasureAt >= 0 ? " (erasure leaf #" + content.erasureAt + ")" : "") + ": nothing to check; the commitment leaf, proved above, is what remains");
      else step("content", "skip", "content not shown (erasable log): " + content.why + "; the steps above prove the commitment leaf, not what it commits to");
    }
    finish();
    if (seq !== renderSeq) return;
    $("check-proves-commitment").hidden = !(res.ok && res.leaf && res.leaf.kind === "commitment");
    if (res.leaf) {
      entry.append(el("h3", { text: "The entry" }));
      const ol = el("ol", { class: "entries", start: index });
      const li = entryItem(index, res.leaf);
      ol.append(li);
      entry.append(ol);
      if (content) showContent(li, content, content.erasureAt);
      else if (res.leaf.kind === "commitment") showContent(li, { state: "hidden", why: "the check failed" }, -1);
    }
  }

  async function renderPolicy(seq) {
    const p = pinnedPolicy();
    $("policy-pinned").textContent = p ? p.text : "(none pinned for " + (state.log || "this log") + ")";
    let served = null;
    try {
      served = await getText("v1/policy");
      $("policy-served").textContent = served;
    } catch (e) {
      $("policy-served").textContent = "(" + e.message + ")";
    }
    if (seq !== renderSeq) return;
    if (!p) msg("policy-msg", "No policy is pinned for this log yet: the first check will pin the one it serves.", "warn");
    else if (served !== null && served !== p.text) msg("policy-msg", "The policy the log serves DIFFERS from the one pinned " + howText(p) + " at " + p.at + ". Checks keep using the pinned one.", "warn");
    else msg("policy-msg", "Pinned " + howText(p) + " at " + p.at + (served !== null ? "; the log serves the same policy." : "."), "pass");
  }

  // ---- Routing: #view?params ----

  const VIEWS = { status: renderStatus, entries: renderEntries, search: renderSearch, check: renderCheck, policy: renderPolicy };

  // The status view refreshes itself every REFRESH_MS while it is shown
  // (not while the tab is hidden); showing another view stops it.
  // data-autorefresh and data-refreshes on <html> say so, for the tests.
  const REFRESH_MS = 10000;
  let refreshTimer = 0;
  function stopRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = 0;
    document.documentElement.dataset.autorefresh = "off";
  }
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    document.documentElement.dataset.autorefresh = "on";
    refreshTimer = setTimeout(() => {
      refreshTimer = 0;
      if (document.hidden) return scheduleRefresh();
      const seq = ++renderSeq;
      renderStatus(seq, null, true).catch((e) => {
        console.error(e);
      }).finally(() => {
        if (seq !== renderSeq) return; // another view, or a newer render, took over
        const d = document.documentElement.dataset;
        d.refreshes = String(Number(d.refreshes || 0) + 1);
        scheduleRefresh();
      });
    }, REFRESH_MS);
  }

  let currentView = "";

  function route() {
    const h = location.hash.replace(/^#/, "");
    const q = h.indexOf("?");
    let view = q < 0 ? h : h.slice(0, q);
    const params = new URLSearchParams(q < 0 ? "" : h.slice(q + 1));
    if (!VIEWS[view]) view = "status";
    for (const s of document.querySelectorAll("[data-view]")) s.hidden = s.dataset.view !== view;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === view) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = "Tidemark: " + view;
    currentView = view;
    stopRefresh();
    const seq = ++renderSeq;
    document.documentElement.dataset.busy = "true";
    document.documentElement.dataset.renders = String(seq); // for tests: a view was rendered
    VIEWS[view](seq, params).catch((e) => {
      console.error(e);
    }).finally(() => {
      if (seq !== renderSeq) return;
      document.documentElement.dataset.busy = "false";
      if (view === "status") scheduleRefresh();
    });
  }

  function provenance() {
    const p = $("provenance");
    clear(p);
    let text;
    const here = location.protocol === "file:" ? null : location.origin;
    let logOrigin = "";
    try {
      logOrigin = state.log ? new URL(state.log).origin : "";
    } catch (e) { /* none */ }
    if (location.protocol === "file:") {
      text = "This page was opened from a file on this computer: the checks run the code in that file, whatever the log says. They are as trustworthy as your copy of the page and the policy you pinned.";
      p.dataset.mode = "file";
    } else if (logOrigin && here === logOrigin) {
      text = "This page was served by the log it checks. A dishonest log could serve a page that lies; for a check that does not depend on the log, open a copy of this page you keep (a file, or another host) and point it at this log.";
      p.dataset.mode = "log";
    } else {
      text = "This page was served by " + here + ", not by the log it checks (" + (logOrigin || "none yet") + "): a dishonest log cannot change the code running these checks; whoever serves this page can.";
      p.dataset.mode = "other";
    }
    p.append(el("p", { text }));
  }

  function init() {
    if (!V) {
      document.body.prepend(el("p", { class: "banner fail", text: "verify.js did not load: nothing on this page can be checked." }));
      return;
    }
    initLog();
    if (!globalThis.crypto || !globalThis.crypto.subtle) {
      const b = $("nocrypto");
      b.hidden = false;
      b.textContent = "This browser offers no WebCrypto on this page: crypto.subtle exists only in secure contexts (https pages, http://localhost and file:// pages). The page can show the log, but it cannot check anything; open it over https, from localhost, or from a file.";
    }
    provenance();
    $("log-form").addEventListener("submit", (e) => {
      e.preventDefault();
      let log;
      try {
        log = normalizeLog($("log-url").value);
      } catch (err) {
        $("log-url").setCustomValidity(err.message);
        $("log-url").reportValidity();
        return;
      }
      $("log-url").setCustomValidity("");
      state.log = log;
      state.token = $("read-token").value.trim();
      sessionStorage.setItem("tidemark.token:" + log, state.token);
      localStorage.setItem("tidemark.lastLog", log);
      try {
        const u = new URL(location.href);
        u.searchParams.set("log", log);
        history.replaceState(null, "", u.toString());
      } catch (err) { /* file:// may refuse: the field still holds the log */ }
      provenance();
      route();
    });
    $("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const f of SEARCH_FIELDS) {
        const v = e.target.elements[f].value.trim();
        if (v) q.set(f, v);
      }
      const h = "#search?" + q.toString();
      if (location.hash === h) route();
      else location.hash = h;
    });
    $("check-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const h = "#check?index=" + encodeURIComponent($("check-index").value.trim());
      if (location.hash === h) route();
      else location.hash = h;
    });
    $("policy-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = $("policy-text").value.replace(/\r\n/g, "\n");
      try {
        const p = await V.parsePolicy(text);
        if (!state.log) throw new Error("enter the log's URL first");
        pin(text, "pasted");
        $("policy-text").value = "";
        route();
        msg("policy-msg", "Pinned a policy for " + p.origin + ".", "pass");
      } catch (err) {
        msg("policy-msg", "Not pinned: " + err.message, "fail");
      }
    });
    $("policy-pin-served").addEventListener("click", async () => {
      try {
        const text = await getText("v1/policy");
        await V.parsePolicy(text);
        pin(text, "served");
        route();
      } catch (err) {
        msg("policy-msg", "Not pinned: " + err.message, "fail");
      }
    });
    $("policy-forget").addEventListener("click", () => {
      localStorage.removeItem(policyKey());
      route();
    });
    window.addEventListener("hashchange", route);
    // The skip link moves focus to the content without changing the hash,
    // which says the view.
    document.querySelector(".skip").addEventListener("click", (e) => {
      e.preventDefault();
      $("main").focus();
    });
    // The chart is drawn at the width it has, so that its text stays
    // readable on a phone: redraw it when that changes.
    let resizing = 0;
    window.addEventListener("resize", () => {
      cancelAnimationFrame(resizing);
      resizing = requestAnimationFrame(() => {
        if (currentView === "status" && lastRate && $("rate-chart").clientWidth !== lastRate.width) renderRate(lastRate.samples);
      });
    });
    route();
    document.documentElement.dataset.ready = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
