// Drives chat.html in headless Chromium: starts a session by naming the project folder, answers
// a question in its card, approves a decision, and answers the next question from the chat box.
// Settings come from the environment (tests/test_browser.py sets them); prints a JSON report.
import { chromium } from "playwright-core";

const env = process.env;
const STEP_MS = Number(env.STEP_TIMEOUT_MS || 180000); // generous: a busy 2-core machine

async function waitForCard(page, titlePart) {
  await page.waitForFunction(
    (part) => document.body.dataset.state === "waiting"
      && [...document.querySelectorAll("[data-testid=card-title]")].some((t) => t.textContent.includes(part)),
    titlePart, { timeout: STEP_MS, polling: 200 });
  return page.evaluate(() => {
    const log = [...document.querySelectorAll("#log > *")];
    const card = log[log.length - 1];
    const above = log[log.length - 2];
    return {
      title: card.querySelector("[data-testid=card-title]").textContent,
      description: card.querySelector("[data-testid=card-description]").textContent,
      buttons: [...card.querySelectorAll("button")].map((b) => b.dataset.testid),
      above: above ? { kind: above.dataset.testid, text: above.textContent } : null,
    };
  });
}

async function messages(page) {
  return page.$$eval("[data-testid^=msg-]", (els) => els.map((e) => ({ kind: e.dataset.testid, text: e.textContent })));
}

const context = await chromium.launchPersistentContext(env.USER_DATA_DIR, {
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const report = { cards: [] };
try {
  const page = context.pages()[0] || await context.newPage();
  page.on("pageerror", (err) => { report.pageErrors = [...(report.pageErrors || []), String(err)]; });
  await page.goto(env.PAGE_URL);

  // Start: the first message names the project folder.
  await page.fill("[data-testid=input]", env.PROJECT_DIR);
  await page.click("[data-testid=send]");
  report.cards.push(await waitForCard(page, env.FIRST_TITLE));

  // Answer the question in its card's answer field.
  await page.fill("[data-testid=arg-answer]", env.FIRST_ANSWER);
  await page.click("[data-testid=submit-edit]");
  report.cards.push(await waitForCard(page, env.DECISION_TITLE));

  // Approve the recommendation.
  await page.click("[data-testid=approve]");
  report.cards.push(await waitForCard(page, env.NEXT_TITLE));

  // Answer the next question from the chat box, while its card waits.
  await page.fill("[data-testid=input]", env.NEXT_ANSWER);
  await page.click("[data-testid=send]");
  report.cards.push(await waitForCard(page, env.NEXT_DECISION_TITLE));

  report.messages = await messages(page);
  report.status = await page.textContent("[data-testid=status]");
} catch (err) {
  report.error = String(err && err.stack || err);
} finally {
  await context.close();
}
console.log(JSON.stringify(report));
process.exit(report.error ? 1 : 0);
