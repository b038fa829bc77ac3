// Browser tests of Tidemark's web page against a commitment log
// (`tidemark log --leaves commitment`) in which an entry was erased, in
// headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core.
// cmd/tidemark's browser_e2e_test.go (TestBrowserCommitmentLog) starts the
// log with witnesses, posts events, erases one and runs this script.
//
// Environment:
//   TIDEMARK_LOG_URL       the log (required)
//   TIDEMARK_POLICY_FILE   the log's policy, pasted into the page to pin it
//   TIDEMARK_OPENED        an entry whose event the log still holds
//   TIDEMARK_ACTOR         that event's actor
//   TIDEMARK_ERASED        an erased entry
//   TIDEMARK_ERASURE       the index of the erasure leaf that erased it
//   TIDEMARK_REASON        the erasure's reason
//   TIDEMARK_ENTRIES       how many entries the log holds
//   CHROMIUM               the browser (default /usr/bin/chromium)
//
// Exits non-zero if any check fails.
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";

const env = process.env;
const LOG = new URL(env.TIDEMARK_LOG_URL || "").toString();
const POLICY = env.TIDEMARK_POLICY_FILE ? readFileSync(env.TIDEMARK_POLICY_FILE, "utf8") : "";
const OPENED = Number(env.TIDEMARK_OPENED || "0");
const ACTOR = env.TIDEMARK_ACTOR || "";
const ERASED = Number(env.TIDEMARK_ERASED || "1");
const ERASURE = Number(env.TIDEMARK_ERASURE || "3");
const REASON = env.TIDEMARK_REASON || "";
const ENTRIES = Number(env.TIDEMARK_ENTRIES || "0");
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

let failures = 0;
function expect(name, cond, detail) {
  if (cond) {
    console.log("ok   " + name);
  } else {
    failures++;
    console.log("FAIL " + name + (detail ? ": " + detail : ""));
  }
}

async function idle(page) {
  await page.waitForFunction(() => document.documentElement.dataset.ready === "true" && document.documentElement.dataset.busy === "false", null, { timeout: 30000 });
}
async function rendered(page, action) {
  const before = await page.evaluate(() => Number(document.documentElement.dataset.renders || 0));
  await action();
  await page.waitForFunction((b) => Number(document.documentElement.dataset.renders || 0) > b && document.documentElement.dataset.busy === "false", before, { timeout: 30000 });
}
async function view(page, hash) {
  await rendered(page, () => page.evaluate((h) => {
    if (location.hash === h) dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = h;
  }, hash));
}
async function checkSteps(page, index) {
  await view(page, "#check?index=" + index);
  const steps = await page.$$eval("#check-steps li", (lis) => lis.map((li) => ({ step: li.dataset.step, status: li.dataset.status, detail: li.querySelector(".detail").textContent })));
  const verdict = { status: await page.getAttribute("#check-verdict", "data-status"), text: await page.textContent("#check-verdict") };
  const content = await page.$eval("#check-entry", (e) => {
    const c = e.querySelector(".content");
    return { kind: (e.querySelector("li.entry") || { dataset: {} }).dataset.kind, content: c ? c.dataset.content : "", text: e.textContent };
  });
  const proves = await page.$eval("#check-proves-commitment", (e) => !e.hidden);
  return { steps, verdict, content, proves };
}

// axeCheck runs axe-core on the page as it is now (as browser.mjs does: a
// violation of impact serious or critical fails), served from the page's
// origin by this script, never by the log.
async function axeCheck(page, name) {
  if (!(await page.evaluate(() => !!globalThis.axe))) {
    const url = new URL("/__axe.min.js", page.url()).toString();
    await page.route(url, (r) => r.fulfill({ status: 200, contentType: "text/javascript; charset=utf-8", body: AXE }));
    await page.addScriptTag({ url });
  }
  const bad = await page.evaluate(async () => {
    const r = await globalThis.axe.run(document, { resultTypes: ["violations"], runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] } });
    return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => v.id + ": " + v.help + ": " + v.nodes.slice(0, 4).map((n) => n.target.join(" ")).join("; "));
  });
  expect("axe: " + name + ": no serious or critical violation", bad.length === 0, bad.join("\n"));
}

const profile = mkdtempSync(join(tmpdir(), "tidemark-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 900 },
});
const errors = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => errors.push("page error: " + e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) errors.push("console: " + m.text());
  });
  await page.goto(LOG + "#status");
  await idle(page);
  if (POLICY) {
    await view(page, "#policy");
    await page.fill("#policy-text", POLICY);
    await rendered(page, () => page.click("#policy-form button[type=submit]"));
    await page.waitForFunction(() => /Pinned/.test(document.getElementById("policy-msg").textContent));
  }

  // The entries view: commitment leaves, the erased one, the erasure leaf.
  await view(page, "#entries");
  await page.waitForFunction(() => Array.from(document.querySelectorAll("#entries-list .content")).every((c) => c.dataset.content !== "wait"), null, { timeout: 30000 });
  const items = await page.$$eval("#entries-list li.entry", (lis) => lis.map((li) => {
    const c = li.querySelector(".content");
    const field = (f) => Array.from(li.querySelectorAll("dd[data-field=" + f + "]"), (d) => d.textContent);
    return { index: Number(li.dataset.index), kind: li.dataset.kind, content: c ? c.dataset.content : "", contentText: c ? c.textContent : "", actor: field("actor"), commitment: field("commitment"), reason: field("reason"), erased: field("erased"), source: field("source"), received: field("received"), text: li.textContent };
  }));
  const byIndex = new Map(items.map((i) => [i.index, i]));
  const text = await page.textContent("#entries-list");
  expect("entries: every entry is listed", items.length === ENTRIES, JSON.stringify(items.map((i) => [i.index, i.kind])));
  expect("entries: no entry is raw", items.every((i) => i.kind !== "raw"), JSON.stringify(items.map((i) => [i.index, i.kind])));
  expect("entries: no \"shaped like an event leaf\" warning", !/shaped like/.test(text), text.slice(0, 500));
  expect("entries: the events are commitment leaves", items.filter((i) => i.kind === "commitment").length === ENTRIES - 1, JSON.stringify(items.map((i) => i.kind)));
  for (const i of items.filter((i) => i.kind === "commitment")) {
    expect("entries: #" + i.index + " shows its time, source and commitment in short",
      i.received.length === 1 && /^\d{4}-\d{2}-\d{2}T/.test(i.received[0]) && i.source.length === 1 && i.commitment.length === 1 && /^[0-9a-f]{16}…$/.test(i.commitment[0]), JSON.stringify(i));
  }
  const opened = byIndex.get(OPENED) || {};
  expect("entries: #" + OPENED + " is opened and checked in the browser", opened.content === "opened" && /SHA-256/.test(opened.contentText), JSON.stringify(opened));
  expect("entries: #" + OPENED + " shows its event (actor " + ACTOR + ")", (opened.actor || []).includes(ACTOR), JSON.stringify(opened.actor));
  const erased = byIndex.get(ERASED) || {};
  expect("entries: #" + ERASED + " says erased, by the erasure at #" + ERASURE, erased.kind === "commitment" && erased.content === "erased" && /Erased/.test(erased.contentText) && erased.contentText.includes("entry #" + ERASURE), JSON.stringify(erased));
  expect("entries: #" + ERASED + " shows no event", (erased.actor || []).length === 0, JSON.stringify(erased.actor));
  const erasure = byIndex.get(ERASURE) || {};
  expect("entries: #" + ERASURE + " is an erasure leaf with its reason, range and source",
    erasure.kind === "erasure" && (erasure.reason || [])[0] === REASON && (erasure.erased || [])[0] === "#" + ERASED && (erasure.source || [])[0] === "dpo" && (erasure.received || []).length === 1, JSON.stringify(erasure));

  await axeCheck(page, "entries of a commitment log");

  // A log whose events need a read token the page has not got: the
  // commitment leaves say their content is not shown.
  await page.route("**/v1/payloads?*", (r) => r.fulfill({ status: 401, contentType: "application/json", body: '{"error":"this log needs a read token"}' }));
  await view(page, "#entries");
  await page.waitForFunction(() => Array.from(document.querySelectorAll("#entries-list .content")).every((c) => c.dataset.content !== "wait"), null, { timeout: 30000 });
  const hidden = await page.$$eval("#entries-list .content", (cs) => cs.map((c) => ({ content: c.dataset.content, text: c.textContent })));
  expect("entries without a read token: every commitment leaf says its content is not shown", hidden.length === ENTRIES - 1 && hidden.every((h) => h.content === "hidden" && /Content not shown \(erasable log\)/.test(h.text) && /read token/.test(h.text)), JSON.stringify(hidden));
  expect("entries without a read token: no event shown", (await page.$$("#entries-list dd[data-field=actor]")).length === 0);
  await page.unroute("**/v1/payloads?*");
  errors.splice(0, errors.length, ...errors.filter((e) => !/401/.test(e)));

  // Search: the log's search answers opened events, never the erased one.
  await view(page, "#search?actor=" + encodeURIComponent(ACTOR));
  const found = await page.$$eval("#search-list li.entry", (lis) => lis.map((li) => Number(li.dataset.index)));
  expect("search: finds " + ACTOR + "'s event", found.includes(OPENED), JSON.stringify(found) + " " + (await page.textContent("#search-msg")));

  // The check of an opened commitment leaf: six steps, the content checked.
  let c = await checkSteps(page, OPENED);
  expect("check #" + OPENED + ": six steps, all passed", c.steps.length === 6 && c.steps.every((s) => s.status === "pass"), JSON.stringify(c.steps));
  expect("check #" + OPENED + ": the last step checks the content against the commitment", c.steps.length === 6 && c.steps[5].step === "content" && /SHA-256/.test(c.steps[5].detail), JSON.stringify(c.steps[5]));
  expect("check #" + OPENED + ": the leaf step says it is a commitment leaf", c.steps.some((s) => s.step === "leaf" && /commitment leaf/.test(s.detail)), JSON.stringify(c.steps));
  expect("check #" + OPENED + ": the verdict passes and says the content was checked", c.verdict.status === "pass" && /checked against its commitment/.test(c.verdict.text), JSON.stringify(c.verdict));
  expect("check #" + OPENED + ": the entry is shown opened, and what that proves", c.content.kind === "commitment" && c.content.content === "opened" && c.content.text.includes(ACTOR) && c.proves, JSON.stringify(c.content));
  await axeCheck(page, "the check of a commitment leaf");

  // The check of the erased one: in the log, its content erased.
  c = await checkSteps(page, ERASED);
  expect("check #" + ERASED + ": the commitment leaf is proved", c.steps.filter((s) => s.step !== "content").every((s) => s.status === "pass"), JSON.stringify(c.steps));
  expect("check #" + ERASED + ": the content step says erased, by #" + ERASURE, c.steps.some((s) => s.step === "content" && s.status === "skip" && /erased/.test(s.detail) && s.detail.includes("#" + ERASURE)), JSON.stringify(c.steps));
  expect("check #" + ERASED + ": the verdict passes and says the event was erased", c.verdict.status === "pass" && /erased/.test(c.verdict.text), JSON.stringify(c.verdict));
  expect("check #" + ERASED + ": the entry is shown erased", c.content.content === "erased", JSON.stringify(c.content));

  // The check of the erasure leaf.
  c = await checkSteps(page, ERASURE);
  expect("check #" + ERASURE + ": five steps, all passed", c.steps.length === 5 && c.steps.every((s) => s.status === "pass"), JSON.stringify(c.steps));
  expect("check #" + ERASURE + ": the erasure leaf is shown with its reason", c.content.kind === "erasure" && c.content.text.includes(REASON) && !c.proves, JSON.stringify(c.content));

  expect("no script errors and no CSP refusals", errors.length === 0, errors.join("\n"));
} catch (e) {
  failures++;
  console.log("FAIL the browser test: " + (e.stack || String(e)));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(failures === 0 ? "browser tests: all passed" : "browser tests: " + failures + " failed");
process.exit(failures === 0 ? 0 : 1);
