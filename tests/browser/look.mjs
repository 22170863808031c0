// Opens a Vigil /status page in Debian's chromium (headless) and prints, as JSON,
// what a person sees on it: the verdict, the pipeline line, each component's status,
// today's square and uptime, the alerts, the incident timeline, what is muted, the
// fleet; and whether it fits a phone's width. Writes two screenshots:
// <prefix>-desktop.png and <prefix>-phone.png.
//
//   node tests/browser/look.mjs http://127.0.0.1:9464/status?format=html target/screenshots/ok
import { chromium } from "playwright-core";

const [url, prefix] = process.argv.slice(2);
if (!url || !prefix) {
  console.error("usage: look.mjs <url> <screenshot prefix>");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const response = await page.goto(url, { waitUntil: "load" });
  const seen = await page.evaluate(() => {
    const text = (el) => (el ? (el.innerText ?? el.textContent).replace(/\s+/g, " ").trim() : null);
    const rows = (sel) => [...document.querySelectorAll(sel)];
    return {
      title: document.title,
      verdict: text(document.querySelector("#verdict")),
      verdictColour: document.querySelector("#verdict")
        ? getComputedStyle(document.querySelector("#verdict")).backgroundColor
        : null,
      pipeline: {
        state: document.querySelector("#pipeline")?.dataset.state ?? null,
        text: text(document.querySelector("#pipeline")),
      },
      components: rows("article.component").map((a) => {
        const today = a.querySelector("svg.bars rect.today");
        return {
          name: a.dataset.component,
          status: text(a.querySelector("h3 .badge")),
          todayGrade: today?.dataset.grade ?? null,
          todayFill: today ? getComputedStyle(today).fill : null,
          todayTitle: text(today?.querySelector("title")) ?? today?.textContent ?? null,
          squares: a.querySelectorAll("svg.bars rect").length,
          uptime: text(a.querySelector(".uptime")),
          chart: !!a.querySelector("svg.chart"),
          text: text(a),
        };
      }),
      alerts: rows("tr.alert").map((r) => ({ name: r.dataset.alert, text: text(r) })),
      incidents: rows("tr.incident").map((r) => ({
        alert: r.dataset.alert,
        state: r.dataset.state,
        text: text(r),
      })),
      muting: rows("tr.silence, tr.window").map((r) => text(r)),
      fleet: rows("tr.task").map((r) => ({ task: r.dataset.task, state: r.dataset.state, text: text(r) })),
      headers: rows("th").length,
      scripts: document.querySelectorAll("script").length,
      refresh: document.querySelector('meta[http-equiv="refresh"]')?.content ?? null,
    };
  });
  seen.httpStatus = response.status();
  await page.screenshot({ path: `${prefix}-desktop.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  seen.phone = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  await page.screenshot({ path: `${prefix}-phone.png`, fullPage: true });
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
