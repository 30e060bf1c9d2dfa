// End-to-end check of the browser demo in Debian's headless Chromium (playwright-core).
// usage: node test/e2e.mjs URL Z_JSON SCREENSHOT.png  -> prints one JSON line of findings
import {chromium} from 'playwright-core';
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';

const [url, zJson, screenshot] = process.argv.slice(2);
const z = JSON.parse(zJson);
const profile = mkdtempSync(join(tmpdir(), 'tfvae-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const findings = {console: []};
try {
  const page = await context.newPage();
  page.on('console', (m) => findings.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => findings.console.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.tfvae?.ready ||
      document.getElementById('status').textContent.startsWith('error'), null, {timeout: 90000});
  findings.status = await page.textContent('#status');
  if (findings.status === 'ready') {
    const viewPixels = () => page.evaluate(() => {
      const c = document.getElementById('view');
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    });
    const std = (px) => {
      const grey = px.filter((_, i) => i % 4 !== 3);  // the R, G and B values (not alpha)
      const mean = grey.reduce((a, b) => a + b, 0) / grey.length;
      return Math.sqrt(grey.reduce((a, b) => a + (b - mean) ** 2, 0) / grey.length);
    };
    const before = await viewPixels();
    findings.view_std = std(before);
    await page.locator('#dim0').fill('2.5');  // fires 'input'
    await page.evaluate(() => window.tfvae.busy);
    const after = await viewPixels();
    findings.slider_changed_pixels = after.filter((v, i) => v !== before[i]).length;
    findings.strip_std = std(await page.evaluate(() => {
      const c = document.getElementById('strip');
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    }));
    await page.evaluate((zs) => window.tfvae.show(zs), z);
    findings.raw_pixels = await page.evaluate(() => window.tfvae.rawPixels());
    findings.decoded = await page.evaluate((zs) => window.tfvae.decode(zs), z);
    await page.click('#sample');  // leave a prior sample on screen for the screenshot
    await page.evaluate(() => window.tfvae.busy);
    if (screenshot) await page.screenshot({path: screenshot, fullPage: true});
  }
} finally {
  await context.close();
  rmSync(profile, {recursive: true, force: true});
}
console.log(JSON.stringify(findings));
