// Drives imgpipe's upload page (/) in headless Debian Chromium:
// uploads the given files through the page as a user would (file picker),
// waits for every row to end, checks what the page shows, and takes a
// screenshot. Prints one JSON line with what it saw; exits non-zero when
// the page does not behave.
//
// usage: node upload-page.mjs <base-url> <credential> <screenshot.png> <file>...
import { chromium } from "playwright-core";

const [base, credential, screenshot, ...files] = process.argv.slice(2);
const executablePath = process.env.IMGPIPE_TEST_CHROMIUM || "/usr/bin/chromium";

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // What works on this machine kind (see ../shared/CRATES.md); Playwright
  // gives every launch a fresh, empty profile of its own.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Script errors count; a refused upload's "Failed to load resource" is
  // the browser reporting an answer the page then explains.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource")
    && problems.push(`console: ${m.text()}`));
  await page.goto(base + "/");
  await page.fill("#credential", credential);
  await page.dispatchEvent("#credential", "change");
  await page.setInputFiles("#picker", files);
  // Every row ends processed or with an error.
  await page.waitForFunction(
    (n) => document.querySelectorAll("li.file[data-outcome]").length === n,
    files.length,
    { timeout: 120_000 },
  );
  const rows = await page.$$eval("li.file", (items) =>
    items.map((li) => ({
      name: li.querySelector(".name").textContent,
      outcome: li.dataset.outcome,
      imageId: li.dataset.imageId || null,
      state: li.querySelector(".state").textContent,
      thumbnail: (() => {
        const img = li.querySelector("img");
        return img ? { width: img.naturalWidth, height: img.naturalHeight } : null;
      })(),
      metadata: Object.fromEntries(
        [...li.querySelectorAll("table.meta tr")].map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent]),
      ),
      progress: Number(li.querySelector("progress").value),
    })),
  );
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ rows, problems }));
} catch (e) {
  failed = true;
  console.error(String(e && e.stack || e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
