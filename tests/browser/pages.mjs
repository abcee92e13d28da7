// Drives Cocoon's pages in headless Chromium, as a person would:
//   node pages.mjs --base http://127.0.0.1:PORT --out DIR [--question TEXT]
//                  [--init-data DATA --forged-init-data DATA]
// The explorer must show the registry, the proxy and (after the chat) the
// worker; the chat page must answer with the model and its receipt must
// show "verified"; no request may go to another origin. With --init-data
// the chat runs as a Telegram Mini App (Telegram opens it with
// #tgWebAppData=...): it must answer, show the user's balance and a
// top-up link with its QR code; with the forged data it must be refused.
// Screenshots go to DIR. Prints a JSON summary; exits non-zero, saying
// why, on any failure.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const base = arg("base");
const out = arg("out");
const question = arg("question", "What is the capital of France? Answer in one sentence.");
const initData = arg("init-data");
const forgedInitData = arg("forged-init-data");
if (!base || !out) {
  console.error("usage: node pages.mjs --base URL --out DIR [--question TEXT]");
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const foreign = [];
const consoleErrors = [];
const summary = { screenshots: [] };

async function shot(page, name) {
  // A script that wrote an element or a list as text shows "[object …]".
  const text = await page.evaluate(() => document.body.innerText);
  const garbled = text.match(/\[object [A-Za-z]+\]/);
  if (garbled) fail(`${name}: the page shows ${garbled[0]} where content belongs`);
  const path = join(out, name);
  await page.screenshot({ path, fullPage: true });
  summary.screenshots.push(path);
}

function fail(message) {
  throw new Error(message);
}

async function explorer(page, phase) {
  await page.goto(`${base}/`);
  await page.waitForSelector("body[data-loaded=yes]", { timeout: 30000 });
  const registry = await page.textContent("#registry");
  const path = await page.textContent("#path");
  summary[`explorer_${phase}`] = { registry: registry.slice(0, 400), path };
  await shot(page, `explorer-${phase}.png`);
  return { registry, path, workers: await page.textContent("#workers") };
}

async function chat(page, fragment = "", name = "chat.png") {
  // What the page sends: its messages must leave it encrypted.
  const posted = [];
  page.on("request", (r) => { if (r.url().endsWith("/v1/chat/completions")) posted.push(r.postData() || ""); });
  await page.goto(`${base}/chat${fragment}`);
  await page.waitForSelector("body[data-loaded=yes]", { timeout: 30000 });
  const sealedState = await page.getAttribute("#sealed", "data-state");
  if (sealedState !== "verified") fail(`the chat page did not verify the attestation: ${await page.textContent("#sealed")}`);
  const models = await page.$$eval("#model option", (os) => os.map((o) => o.value));
  if (!models.length) fail(`the chat page lists no model: ${await page.textContent("#model-info")}`);
  await page.fill("#input", question);
  const started = Date.now();
  await page.click("#send");
  await page.waitForSelector(".msg.assistant[data-state=done], .msg.error", { timeout: 180000 });
  const error = await page.$(".msg.error");
  if (error) fail(`the chat answered with an error: ${await error.textContent()}`);
  const answer = await page.textContent(".msg.assistant[data-state=done]");
  summary.chat = { model: models[0], question, answer, seconds: (Date.now() - started) / 1000 };
  await page.click(".msg.assistant[data-state=done] button.receipt");
  await page.waitForSelector("#receipt [data-verdict]", { timeout: 30000 });
  const verdict = await page.getAttribute("#receipt [data-verdict]", "data-verdict");
  summary.chat.receipt = verdict;
  summary.chat.aci_receipt = await page.getAttribute("#receipt [data-aci]", "data-aci");
  summary.chat.encrypted = posted.length > 0 && posted.every((b) => !b.includes(question) && b.includes('"content":"'));
  summary.chat.receipt_text = (await page.textContent("#receipt")).slice(0, 600);
  await shot(page, name);
  if (verdict !== "verified") fail(`the answer's receipt shows ${verdict}: ${summary.chat.receipt_text}`);
  if (summary.chat.aci_receipt !== "verified") fail(`the ACI receipt, checked in the browser: ${summary.chat.receipt_text}`);
  if (!summary.chat.encrypted) fail(`the question left the page in the clear: ${posted.join(" | ").slice(0, 400)}`);
}

/** The chat as a Telegram Mini App: answers, shows the balance and a
 * top-up link with its QR code; forged initData is refused. */
async function miniApp(context) {
  const page = await context.newPage();
  const fragment = `#tgWebAppData=${encodeURIComponent(initData)}&tgWebAppVersion=8.0&tgWebAppPlatform=web`;
  await chat(page, fragment, "mini-app.png");
  await page.waitForSelector("#account-section:not([hidden])", { timeout: 30000 });
  await page.waitForSelector("#deposit a[href^='ton://transfer/']", { timeout: 30000 });
  const qr = await page.waitForSelector("#deposit img.qr", { timeout: 30000 });
  await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, qr, { timeout: 30000 });
  summary.mini_app = {
    account: await page.textContent("#account"),
    deposit_link: await page.getAttribute("#deposit a", "href"),
  };
  await shot(page, "mini-app-balance.png");
  const forged = await (await context.browser().newContext()).newPage();
  await forged.goto(`${base}/chat#tgWebAppData=${encodeURIComponent(forgedInitData)}`);
  await forged.waitForSelector("body[data-loaded=yes]", { timeout: 30000 });
  const info = await forged.textContent("#model-info");
  summary.mini_app.forged = info;
  await shot(forged, "mini-app-forged.png");
  if (!/does not match/.test(info)) fail(`forged initData was not refused: ${info}`);
  if ((await forged.$$("#model option")).length) fail("forged initData was shown the models");
}

const browser = await chromium.launch({
  executablePath: process.env.COCOON_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let code = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const origin = new URL(base).origin;
  // Anything for another origin is refused and remembered: the pages must
  // load nothing from elsewhere.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (!url.startsWith(origin) && !url.startsWith("data:")) {
      foreign.push(url);
      return route.abort();
    }
    return route.continue();
  });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  if (initData) {
    await miniApp(context);
    await explorer(page, "mini-app");
  } else {
    await openNetwork(page);
  }
  if (foreign.length) fail(`the pages asked for other origins: ${foreign.join(", ")}`);
  if (consoleErrors.length) fail(`the pages logged errors: ${consoleErrors.join(" | ")}`);
} catch (e) {
  summary.error = e.message;
  code = 1;
} finally {
  await browser.close();
}
summary.foreign_requests = foreign;
summary.console_errors = consoleErrors;
console.log(JSON.stringify(summary, null, 2));
process.exit(code);

/** An open network: the explorer before and after a chat, and the latest
 * receipt checked from the explorer. */
async function openNetwork(page) {
  const before = await explorer(page, "before");
  if (!/Proxies/.test(before.registry)) fail(`the explorer shows no registry: ${before.registry.slice(0, 300)}`);
  if (!/open/.test(before.registry)) fail("the explorer shows no open proxy contract");
  await chat(page);
  const after = await explorer(page, "after");
  if (!/TEE/.test(after.workers) && !/sim|tdx|sev/.test(after.workers)) fail(`the explorer lists no worker after an answer: ${after.workers}`);
  await page.click("#latest");
  await page.waitForSelector("#report [data-verdict]", { timeout: 30000 });
  summary.explorer_receipt = await page.getAttribute("#report [data-verdict]", "data-verdict");
  await shot(page, "explorer-receipt.png");
  if (summary.explorer_receipt !== "verified") fail(`the explorer's check of the latest receipt: ${await page.textContent("#report")}`);
}
