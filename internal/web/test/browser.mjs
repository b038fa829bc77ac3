// Browser tests of Tidemark's web page, in headless Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core. cmd/tidemark's
// browser_e2e_test.go starts a real log with witnesses, posts events and
// runs this script; it can also be run by hand against any log:
//
//   TIDEMARK_LOG_URL=http://127.0.0.1:8080/ TIDEMARK_POLICY_FILE=policy.txt \
//   TIDEMARK_CHECK_INDEX=0 TIDEMARK_ACTOR=alice node browser.mjs
//
// Environment:
//   TIDEMARK_LOG_URL       the log (required)
//   TIDEMARK_POLICY_FILE   the log's policy, pasted into the page to pin it
//   TIDEMARK_CHECK_INDEX   an event entry to check; the entry after it must
//                          exist (the tampering proxy changes its hash)
//   TIDEMARK_ACTOR         the actor of that event, searched for
//   TIDEMARK_EXPECT_RAW    set when the newest entries include a raw one
//   TIDEMARK_HOSTILE_TEXT  the actor of an event made of markup, which must
//                          show as text (optional)
//   TIDEMARK_EXPECT_BARS   the least number of bars the append-rate chart
//                          must show (optional)
//   TIDEMARK_SCREENSHOTS   a directory to write PNG screenshots to (optional)
//   CHROMIUM               the browser (default /usr/bin/chromium)
//
// Every view is also checked with axe-core (at desktop and phone width):
// a violation of impact serious or critical fails, the others are printed.
//
// Exits non-zero if any check fails; prints SKIP for what the log does not
// offer (no /v1/status, /v1/search or CORS headers: an older Tidemark).
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join, extname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const env = process.env;
const LOG = new URL(env.TIDEMARK_LOG_URL || "").toString();
const POLICY = env.TIDEMARK_POLICY_FILE ? readFileSync(env.TIDEMARK_POLICY_FILE, "utf8") : "";
const INDEX = Number(env.TIDEMARK_CHECK_INDEX || "0");
const ACTOR = env.TIDEMARK_ACTOR || "";
const HOSTILE = env.TIDEMARK_HOSTILE_TEXT || "";
const SHOTS = env.TIDEMARK_SCREENSHOTS || "";
const STATIC = join(fileURLToPath(new URL(".", import.meta.url)), "..", "static");
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

let failures = 0;
const ok = (name) => console.log("ok   " + name);
const fail = (name, detail) => {
  failures++;
  console.log("FAIL " + name + (detail ? ": " + detail : ""));
};
const skip = (name, why) => console.log("SKIP " + name + ": " + why);
function expect(name, cond, detail) {
  if (cond) ok(name);
  else fail(name, detail);
}

async function shot(page, name, fullPage = true) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name + ".png"), fullPage });
  console.log("     screenshot " + name + ".png");
}

// idle waits until the page has finished rendering its view.
async function idle(page) {
  await page.waitForFunction(() => document.documentElement.dataset.ready === "true" && document.documentElement.dataset.busy === "false", null, { timeout: 30000 });
}

async function goto(page, url) {
  await page.goto(url);
  await idle(page);
}

// rendered runs action and waits until the page has rendered a view after
// it and finished.
async function rendered(page, action) {
  const before = await page.evaluate(() => Number(document.documentElement.dataset.renders || 0));
  await action();
  await page.waitForFunction((b) => Number(document.documentElement.dataset.renders || 0) > b && document.documentElement.dataset.busy === "false", before, { timeout: 30000 });
}

// view switches the page to a view by its hash, as a user clicking a link.
async function view(page, hash) {
  await rendered(page, () => page.evaluate((h) => {
    if (location.hash === h) dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = h;
  }, hash));
}

// axeCheck runs axe-core on the page as it is now. The page's CSP allows
// scripts from its own origin only, so axe is served from that origin: the
// browser's request for /__axe.min.js is answered here, never by the log.
async function axeCheck(page, name) {
  if (!(await page.evaluate(() => !!globalThis.axe))) {
    const url = new URL("/__axe.min.js", page.url()).toString();
    await page.route(url, (r) => r.fulfill({ status: 200, contentType: "text/javascript; charset=utf-8", body: AXE }));
    await page.addScriptTag({ url });
  }
  const res = await page.evaluate(async () => {
    const r = await globalThis.axe.run(document, {
      resultTypes: ["violations"],
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    });
    return { passes: r.passes.length, violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + (n.failureSummary ? " (" + n.failureSummary.replace(/\s+/g, " ").slice(0, 200) + ")" : "")) })) };
  });
  const violations = res.violations;
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of violations.filter((v) => !bad.includes(v))) console.log("     axe " + name + ": " + v.impact + " " + v.id + ": " + v.help + ": " + v.nodes.join("; "));
  expect("axe: " + name + ": no serious or critical violation (" + res.passes + " rules passed)", res.passes > 0 && bad.length === 0, bad.map((v) => v.impact + " " + v.id + ": " + v.help + ": " + v.nodes.join("; ")).join("\n"));
}

// a11y checks the view shown with axe at desktop width, then at phone width
// (where nothing may be wider than the screen), and goes back to desktop.
async function a11y(page, name) {
  await axeCheck(page, name + " (desktop)");
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(100); // the chart redraws at the new width
  await idle(page);
  await axeCheck(page, name + " (phone)");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect("phone: " + name + ": nothing wider than the screen", overflow <= 0, overflow + " px too wide");
  await page.setViewportSize(DESKTOP);
  await page.waitForTimeout(100);
}

async function pinPolicy(page) {
  await view(page, "#policy");
  await page.fill("#policy-text", POLICY);
  await rendered(page, () => page.click("#policy-form button[type=submit]"));
  await page.waitForFunction(() => /Pinned/.test(document.getElementById("policy-msg").textContent));
  const pinned = await page.textContent("#policy-pinned");
  expect("the pasted policy is pinned", pinned === POLICY, pinned);
}

// runCheck types the index into the check form and presses Enter, as a
// keyboard user would, and returns the steps' statuses.
async function runCheck(page, index) {
  await view(page, "#check");
  await page.focus("#check-index");
  await page.keyboard.type(String(index));
  await rendered(page, () => page.keyboard.press("Enter"));
  return page.$$eval("#check-steps li", (lis) => lis.map((li) => ({ step: li.dataset.step, status: li.dataset.status, detail: li.querySelector(".detail").textContent })));
}

// checkChart checks the append-rate chart: an image with a text
// alternative, its labels inside the picture and apart from each other and
// from the plot, a y maximum with its unit, "now" at the end of the x axis,
// and the same figures as text.
async function checkChart(page, name) {
  const c = await page.evaluate(() => {
    const svg = document.querySelector("#rate-chart svg");
    if (!svg) return null;
    const box = (e) => {
      const r = e.getBoundingClientRect();
      return { x: r.left, y: r.top, r: r.right, b: r.bottom };
    };
    const texts = Array.from(svg.querySelectorAll("text"), (t) => Object.assign(box(t), { text: t.textContent }));
    const bars = ((svg.querySelector("path.bar") || { getAttribute: () => "" }).getAttribute("d").match(/M/g) || []).length;
    const grid = Array.from(svg.querySelectorAll("line.grid, line.axis"), box);
    const top = Math.min(...grid.map((g) => g.y));
    const left = Math.min(...grid.map((g) => g.x));
    return {
      role: svg.getAttribute("role"), label: svg.getAttribute("aria-label") || "", title: (svg.querySelector("title") || {}).textContent || "",
      svg: box(svg), texts, bars, top, left,
      caption: document.getElementById("rate-summary").textContent,
      rows: document.querySelectorAll("#rate-table tbody tr").length,
      fontPx: texts.length ? parseFloat(getComputedStyle(svg.querySelector("text")).fontSize) * (svg.getBoundingClientRect().width / svg.viewBox.baseVal.width) : 0,
    };
  });
  if (!c) return fail("chart: " + name + ": there is a chart", await page.textContent("#rate-summary"));
  expect("chart: " + name + ": an image with a title and a label that says the figures", c.role === "img" && c.title !== "" && /entries\/s/.test(c.label), JSON.stringify([c.role, c.title, c.label]));
  expect("chart: " + name + ": the caption says the figures", /entries appended/.test(c.caption) && /peak/.test(c.caption), c.caption);
  expect("chart: " + name + ": a table of the figures", c.rows > 0, String(c.rows));
  const min = Number(env.TIDEMARK_EXPECT_BARS || "1");
  expect("chart: " + name + ": at least " + min + " bars", c.bars >= min, String(c.bars));
  const ymax = c.texts.find((t) => /entries\/s$/.test(t.text));
  expect("chart: " + name + ": the y maximum is labelled, above the plot", ymax && ymax.b <= c.top + 0.5, JSON.stringify([ymax, c.top]));
  expect("chart: " + name + ": the x axis ends at now", c.texts.some((t) => t.text === "now"), JSON.stringify(c.texts.map((t) => t.text)));
  const inside = c.texts.every((t) => t.x >= c.svg.x - 0.5 && t.r <= c.svg.r + 0.5 && t.y >= c.svg.y - 0.5 && t.b <= c.svg.b + 0.5);
  expect("chart: " + name + ": every label inside the picture", inside, JSON.stringify(c.texts));
  const overlaps = [];
  for (let i = 0; i < c.texts.length; i++) {
    for (let j = i + 1; j < c.texts.length; j++) {
      const a = c.texts[i], b = c.texts[j];
      if (a.x < b.r && b.x < a.r && a.y < b.b && b.y < a.b) overlaps.push(a.text + " / " + b.text);
    }
  }
  expect("chart: " + name + ": no two labels overlap", overlaps.length === 0, overlaps.join(", "));
  expect("chart: " + name + ": labels at least 11 px", c.fontPx >= 11, String(c.fontPx));
}

// has asks the log (not the page) whether it answers path, and whether it
// sends CORS headers.
async function probe(path) {
  try {
    const r = await fetch(new URL(path, LOG), { headers: { Origin: "http://example.invalid" } });
    return { status: r.status, cors: r.headers.get("access-control-allow-origin") };
  } catch (e) {
    return { status: 0, cors: null };
  }
}

// The tampering proxy: forwards everything to the log, but flips one byte
// of the hash of entry INDEX^1 (a sibling on INDEX's inclusion path, not
// INDEX's own leaf) in the level-0 hash tile that holds it.
function fmtIndex(n) {
  let s = String(n % 1000).padStart(3, "0");
  for (n = Math.floor(n / 1000); n > 0; n = Math.floor(n / 1000)) s = "x" + String(n % 1000).padStart(3, "0") + "/" + s;
  return s;
}
function startProxy() {
  const sibling = INDEX ^ 1;
  const tile = "/tile/0/" + fmtIndex(Math.floor(sibling / 256));
  const offset = (sibling % 256) * 32 + 7;
  const target = new URL(LOG);
  let flipped = 0;
  const server = createServer((req, res) => {
    const headers = Object.assign({}, req.headers, { host: target.host });
    delete headers["accept-encoding"];
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (ur) => {
      const path = req.url.split("?")[0];
      if (!(path === tile || path.startsWith(tile + ".p/")) || ur.statusCode !== 200) {
        res.writeHead(ur.statusCode, ur.headers);
        ur.pipe(res);
        return;
      }
      const chunks = [];
      ur.on("data", (c) => chunks.push(c));
      ur.on("end", () => {
        const b = Buffer.concat(chunks);
        if (offset < b.length) {
          b[offset] ^= 0x01;
          flipped++;
        }
        const h = Object.assign({}, ur.headers, { "content-length": String(b.length) });
        res.writeHead(ur.statusCode, h);
        res.end(b);
      });
    });
    up.on("error", (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, url: "http://127.0.0.1:" + server.address().port + "/", flipped: () => flipped })));
}

// A static server for the page's files on another origin than the log's.
function startStatic() {
  const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" };
  const server = createServer((req, res) => {
    let p = decodeURIComponent(req.url.split("?")[0]);
    if (p === "/") p = "/index.html";
    if (p.includes("..") || !types[extname(p)]) {
      res.writeHead(404);
      res.end();
      return;
    }
    try {
      const b = readFileSync(join(STATIC, p));
      res.writeHead(200, { "Content-Type": types[extname(p)] });
      res.end(b);
    } catch (e) {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, url: "http://127.0.0.1:" + server.address().port + "/" })));
}

const profile = mkdtempSync(join(tmpdir(), "tidemark-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: DESKTOP,
});
const errors = [];
function watch(page) {
  page.on("pageerror", (e) => errors.push("page error: " + e.message));
  page.on("console", (m) => {
    // A fetch that answers 404 (an endpoint an older log lacks) is logged
    // by the browser itself; anything else, CSP refusals included, is a bug.
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) errors.push("console: " + m.text());
  });
}

let proxy, other;
try {
  const page = context.pages()[0] || (await context.newPage());
  watch(page);
  await goto(page, LOG + "#status");
  expect("the page loads its scripts", await page.evaluate(() => !!globalThis.TidemarkVerify), "");
  expect("the page says it came from the log", (await page.getAttribute("#provenance", "data-mode")) === "log");
  const unlabelled = await page.$$eval("input, textarea, select", (els) => els.filter((e) => e.labels.length === 0 && !e.getAttribute("aria-label")).map((e) => e.id || e.name));
  expect("every field has a label", unlabelled.length === 0, unlabelled.join(", "));

  if (POLICY) await pinPolicy(page);

  // Status.
  const status = await probe("v1/status");
  await view(page, "#status");
  await page.waitForFunction(() => document.getElementById("st-verified").dataset.status, null, { timeout: 30000 });
  expect("status: the checkpoint verifies against the pinned policy", (await page.getAttribute("#st-verified", "data-status")) === "pass", await page.textContent("#st-verified"));
  const origin = await page.textContent("#st-origin");
  expect("status: shows the origin", POLICY ? POLICY.includes("log " + origin + "+") : origin.length > 0, origin);
  expect("status: shows the tree size", /^\d+ entries$/.test(await page.textContent("#st-size")), await page.textContent("#st-size"));
  if (status.status === 404) {
    skip("status: witnesses and rate", "the log has no /v1/status");
  } else {
    await page.waitForFunction(() => document.querySelectorAll("#st-witnesses td[data-status]").length > 0, null, { timeout: 30000 });
    const passed = await page.$$eval("#st-witnesses td[data-status=pass]", (tds) => tds.length);
    expect("status: at least two witnesses' cosignatures verified", passed >= 2, String(passed));
    await checkChart(page, "status");
  }
  await shot(page, "status");
  await a11y(page, "status");
  if (status.status !== 404) await checkChart(page, "status, back at desktop width");

  // The keyboard: from the top of the page, Tab reaches the skip link, then
  // the views' links (with a visible focus ring), and Enter opens a view.
  // (A reload, so that focus starts at the top of the page.)
  const reload = async () => {
    await page.evaluate(() => history.replaceState(null, "", "#status"));
    await page.reload();
    await idle(page);
  };
  await reload();
  const focused = () => page.evaluate(() => {
    const e = document.activeElement;
    const cs = getComputedStyle(e);
    const r = e.getBoundingClientRect();
    return { id: e.id, nav: e.dataset ? e.dataset.nav || "" : "", cls: e.className || "", ring: cs.outlineStyle !== "none" && parseFloat(cs.outlineWidth) >= 2, onScreen: r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.width > 0 };
  });
  await page.keyboard.press("Tab");
  let f = await focused();
  expect("keyboard: the first Tab reaches the skip link, shown", f.cls === "skip" && f.onScreen && f.ring, JSON.stringify(f));
  await page.keyboard.press("Enter");
  f = await focused();
  const after = await page.evaluate(() => ({ hash: location.hash, status: !document.getElementById("view-status").hidden }));
  expect("keyboard: the skip link moves focus to the content, and keeps the view", f.id === "main" && after.hash === "#status" && after.status, JSON.stringify([f, after]));
  await reload();
  const navs = [], seen = [];
  for (let i = 0; i < 8 && navs.length < 5; i++) {
    await page.keyboard.press("Tab");
    f = await focused();
    seen.push(f.nav || f.id || f.cls || "?");
    if (f.nav) navs.push(f);
  }
  expect("keyboard: Tab reaches every view's link, in order", navs.map((n) => n.nav).join(" ") === "status entries search check policy", seen.join(" "));
  expect("keyboard: the focused link shows a focus ring", navs.length > 0 && navs.every((n) => n.ring && n.onScreen), JSON.stringify(navs));
  await rendered(page, () => page.keyboard.press("Enter"));
  const shown = await page.evaluate(() => ({ hash: location.hash, visible: !document.getElementById("view-policy").hidden, current: document.querySelector("[data-nav=policy]").getAttribute("aria-current") }));
  expect("keyboard: Enter on a view's link opens it", shown.hash === "#policy" && shown.visible && shown.current === "page", JSON.stringify(shown));
  await page.keyboard.down("Shift");
  for (let i = 0; i < 3; i++) await page.keyboard.press("Tab");
  await page.keyboard.up("Shift");
  expect("keyboard: Shift+Tab goes back through the views' links", (await focused()).nav === "entries");
  await a11y(page, "policy");

  // The status view refreshes itself while shown, without moving focus or
  // closing what the user opened; another view stops it.
  if (status.status !== 404) {
    await view(page, "#status");
    const before = await page.evaluate(() => Number(document.documentElement.dataset.refreshes || 0));
    await page.focus("#view-status details summary");
    await page.keyboard.press("Enter"); // opens the signed checkpoint
    await page.waitForFunction((b) => Number(document.documentElement.dataset.refreshes || 0) > b, before, { timeout: 25000 });
    const after = await page.evaluate(() => ({ open: document.querySelector("#view-status details").open, focus: document.activeElement.tagName, auto: document.documentElement.dataset.autorefresh, chart: !!document.querySelector("#rate-chart svg") }));
    expect("status: refreshes itself, leaving focus and open details alone", after.open && after.focus === "SUMMARY" && after.auto === "on" && after.chart, JSON.stringify(after));
    await page.click("#view-status details summary"); // closed again, for the screenshots
    await view(page, "#entries");
    expect("status: another view stops the refresh", (await page.evaluate(() => document.documentElement.dataset.autorefresh)) === "off");
  }

  // Newest entries.
  await view(page, "#entries");
  const items = await page.$$eval("#entries-list li", (lis) => lis.length);
  expect("entries: the newest entries are listed", items > 0, String(items));
  const actors = await page.$$eval("#entries-list dd[data-field=actor]", (dds) => dds.map((d) => d.textContent));
  if (ACTOR) {
    let found = actors.includes(ACTOR);
    // Page back until the event shows up.
    for (let i = 0; !found && i < 20 && (await page.$("#entries-pager a[rel=next]")); i++) {
      await rendered(page, () => page.click("#entries-pager a[rel=next]"));
      found = (await page.$$eval("#entries-list dd[data-field=actor]", (dds) => dds.map((d) => d.textContent))).includes(ACTOR);
    }
    expect("entries: paging back finds the event by " + ACTOR, found);
    await view(page, "#entries");
  }
  if (HOSTILE) {
    expect("entries: markup in an event shows as text", actors.includes(HOSTILE), JSON.stringify(actors));
    expect("entries: markup in an event makes no element", (await page.$$("#entries-list img, #entries-list script")).length === 0);
    expect("entries: markup in an event runs nothing", (await page.evaluate(() => globalThis.__pwned)) === undefined);
  }
  if (env.TIDEMARK_EXPECT_RAW) expect("entries: raw entries show their length", (await page.$$("#entries-list li.raw .rawinfo")).length > 0);
  await shot(page, "entries");
  await a11y(page, "entries");

  // Search.
  const search = await probe("v1/search?actor=" + encodeURIComponent(ACTOR || "x"));
  await view(page, "#search");
  await page.fill("#s-actor", ACTOR || "x");
  await rendered(page, () => page.press("#s-actor", "Enter"));
  if (search.status === 404) {
    expect("search: says the log offers no search", /offers no search/.test(await page.textContent("#search-msg")));
    skip("search: by actor", "the log has no /v1/search");
  } else {
    const found = await page.$$eval("#search-list dd[data-field=actor]", (dds) => dds.map((d) => d.textContent));
    expect("search: by actor finds the event", found.length > 0 && found.every((a) => a === ACTOR), JSON.stringify(found) + " " + (await page.textContent("#search-msg")));
  }
  await shot(page, "search");
  await a11y(page, "search results");

  // A check that passes.
  let steps = await runCheck(page, INDEX);
  expect("check: five steps", steps.length === 5, JSON.stringify(steps));
  for (const s of steps) expect("check: step " + s.step + " passed", s.status === "pass", s.detail);
  expect("check: the verdict is PASSED", (await page.getAttribute("#check-verdict", "data-status")) === "pass", await page.textContent("#check-verdict"));
  await shot(page, "check-passed");
  await a11y(page, "check passed");

  // At phone width.
  await page.setViewportSize(PHONE);
  await view(page, "#status");
  await page.waitForFunction(() => document.getElementById("st-verified").dataset.status, null, { timeout: 30000 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect("phone: nothing wider than the screen", overflow <= 0, overflow + " px too wide");
  await shot(page, "status-phone");
  await view(page, "#check?index=" + INDEX);
  await page.waitForFunction(() => ["pass", "fail", "warn"].includes(document.getElementById("check-verdict").dataset.status), null, { timeout: 30000 });
  await shot(page, "check-phone");
  await view(page, "#entries");
  await shot(page, "entries-phone", false);
  await view(page, "#search?actor=" + encodeURIComponent(ACTOR || "x"));
  await shot(page, "search-phone");
  await page.setViewportSize(DESKTOP);

  // A tampered tile: the check must fail at the root, and only there.
  proxy = await startProxy();
  const tp = await context.newPage();
  watch(tp);
  await goto(tp, proxy.url + "#status");
  if (POLICY) await pinPolicy(tp);
  steps = await runCheck(tp, INDEX);
  expect("tampered: the proxy changed a tile", proxy.flipped() > 0);
  const byStep = Object.fromEntries(steps.map((s) => [s.step, s.status]));
  expect("tampered: the root step fails", byStep.root === "fail", JSON.stringify(steps));
  expect("tampered: the signature and quorum still pass", byStep.signature === "pass" && byStep.quorum === "pass" && byStep.leaf === "pass", JSON.stringify(byStep));
  expect("tampered: the verdict is FAILED", (await tp.getAttribute("#check-verdict", "data-status")) === "fail");
  await shot(tp, "check-failed");
  await a11y(tp, "check failed");
  await tp.close();

  // The same page from another origin, and from a file, pointed at the log.
  const cors = await probe("checkpoint");
  other = await startStatic();
  const op = await context.newPage();
  watch(op);
  await goto(op, other.url + "?log=" + encodeURIComponent(LOG) + "#status");
  expect("other origin: the page says where it came from", (await op.getAttribute("#provenance", "data-mode")) === "other");
  if (!cors.cors) {
    skip("other origin: check", "the log sends no Access-Control-Allow-Origin");
  } else {
    if (POLICY) await pinPolicy(op);
    steps = await runCheck(op, INDEX);
    expect("other origin: every step passes", steps.every((s) => s.status === "pass"), JSON.stringify(steps));
    await shot(op, "check-other-origin");
  }
  const fp = await context.newPage();
  watch(fp);
  await goto(fp, pathToFileURL(join(STATIC, "index.html")).href + "?log=" + encodeURIComponent(LOG) + "#status");
  expect("file: the page runs from a file:// URL", await fp.evaluate(() => !!globalThis.TidemarkVerify && !!globalThis.crypto.subtle));
  expect("file: the page says it came from a file", (await fp.getAttribute("#provenance", "data-mode")) === "file");
  if (cors.cors) {
    if (POLICY) await pinPolicy(fp);
    steps = await runCheck(fp, INDEX);
    expect("file: every step passes", steps.every((s) => s.status === "pass"), JSON.stringify(steps));
  } else {
    skip("file: check", "the log sends no Access-Control-Allow-Origin");
    // Without CORS the browser refuses the log's answers: 'could not reach' is
    // the page's message then, and the browser logs the refusal itself.
    errors.splice(0, errors.length, ...errors.filter((e) => !/CORS|Access-Control/.test(e)));
  }
  await fp.close();
  await op.close();

  expect("no script errors and no CSP refusals", errors.length === 0, errors.join("\n"));
} catch (e) {
  fail("the browser test", e.stack || String(e));
} finally {
  await context.close();
  if (proxy) proxy.server.close();
  if (other) other.server.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(failures === 0 ? "browser tests: all passed" : "browser tests: " + failures + " failed");
process.exit(failures === 0 ? 0 : 1);
