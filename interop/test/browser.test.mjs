// Browser test: Debian's Chromium (driven by playwright-core) loads the demo
// page from the ginws example server and uses its echo and chat boxes, and
// opens raw WebSockets from the page to check the browser's own client
// against the server.
//
// Run: node --test test/browser.test.mjs   (from interop/, see run.sh)

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { OUT_DIR, startServer } from '../lib/server.mjs';

const CHROMIUM = process.env.GINWS_CHROMIUM || '/usr/bin/chromium';
const T = { timeout: 60_000 };
const UI_TIMEOUT = 10_000;
// A made-up host name that Chromium resolves to 127.0.0.1 itself (see
// --host-resolver-rules below), used to load the page from an origin whose
// host differs from the one the WebSocket goes to.
const OTHER_HOST = 'ginws-other-origin.test';

let server;
let context;
let userDataDir;
const problems = []; // page errors and console errors, checked at the end

function watch(page, name) {
  page.on('pageerror', (err) => problems.push(`${name}: page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`${name}: console error: ${msg.text()}`);
  });
  return page;
}

async function openDemo(name) {
  const page = watch(await context.newPage(), name);
  const res = await page.goto(server.url('/'), { waitUntil: 'load' });
  assert.equal(res.status(), 200, `${name}: GET / status`);
  await page.locator('#status[data-state="open"]').waitFor({ timeout: UI_TIMEOUT });
  return page;
}

/** Waits until list `selector` on `page` has an item whose text is exactly `text`. */
async function expectLogged(page, selector, text) {
  await page.locator(`${selector} li .text`).getByText(text, { exact: true }).first()
    .waitFor({ timeout: UI_TIMEOUT });
}

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install -y chromium (run.sh does this)`);
  server = await startServer('browser-server');
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ginws-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 720 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--host-resolver-rules=MAP ${OTHER_HOST} 127.0.0.1`,
    ],
  });
  fs.mkdirSync(OUT_DIR, { recursive: true });
});

after(async () => {
  if (context) await context.close().catch(() => {});
  if (server?.running) {
    await server.terminate().catch(() => {});
    await server.kill();
  }
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

describe('demo page in Chromium', () => {
  let pageA;
  let pageB;

  test('page loads and both sockets connect', T, async () => {
    pageA = await openDemo('page A');
    assert.equal(await pageA.title(), 'ginws demo');
    assert.equal(await pageA.locator('#chat-state').getAttribute('data-state'), 'open');
    assert.equal(await pageA.locator('#echo-state').getAttribute('data-state'), 'open');
  });

  test('echo: a message typed into the echo box comes back', T, async () => {
    const text = `echo check ${Date.now()}`;
    await pageA.fill('#echo-input', text);
    await pageA.click('#echo-send');
    await expectLogged(pageA, '#echo-log', text);
    assert.equal(await pageA.inputValue('#echo-input'), '', 'input is cleared after sending');
    // Enter in the input sends as well.
    await pageA.fill('#echo-input', 'sent with Enter <b>not bold</b>');
    await pageA.press('#echo-input', 'Enter');
    await expectLogged(pageA, '#echo-log', 'sent with Enter <b>not bold</b>');
    assert.equal(await pageA.locator('#echo-log b').count(), 0, 'message text must not be parsed as HTML');
  });

  test('chat: a message from page A shows up on page B and on page A', T, async () => {
    pageB = await openDemo('page B');
    // B's socket is open once the 101 is in, a moment before the server
    // counts it in /chat: B's own message coming back shows it is in.
    const ready = `B is in ${Date.now()}`;
    await pageB.fill('#chat-input', ready);
    await pageB.click('#chat-send');
    await expectLogged(pageB, '#chat-log', ready);
    const text = `hello from A ${Date.now()}`;
    await pageA.fill('#chat-input', text);
    await pageA.click('#chat-send');
    await expectLogged(pageB, '#chat-log', text);
    await expectLogged(pageA, '#chat-log', text);
    // And the other way round.
    const reply = 'hi A, B here ✓';
    await pageB.fill('#chat-input', reply);
    await pageB.click('#chat-send');
    await expectLogged(pageA, '#chat-log', reply);
    await expectLogged(pageB, '#chat-log', reply);
    // The echo log of B stayed empty: chat and echo do not mix.
    assert.equal(await pageB.locator('#echo-log li').count(), 0);
  });

  test('chat: a long message shows its beginning and what is left out', T, async () => {
    const n = 1 << 20;
    await pageB.evaluate(async (size) => {
      const ws = new WebSocket(location.href.replace(/^http/, 'ws').replace(/[^\/]*$/, '') + 'chat');
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('ws error')); });
      ws.send('L'.repeat(size));
      ws.close(1000);
    }, n);
    const item = pageA.locator('#chat-log li .text', { hasText: 'more characters)' }).first();
    await item.waitFor({ timeout: UI_TIMEOUT });
    const shown = await item.textContent();
    assert.ok(shown.length < 2100, `shown ${shown.length} characters of ${n}`);
    assert.match(shown, /^L{2000}… \(1046576 more characters\)$/);
    // The page is still usable.
    const after = `after the long one ${Date.now()}`;
    await pageA.fill('#chat-input', after);
    await pageA.click('#chat-send');
    await expectLogged(pageA, '#chat-log', after);
  });

  test('screenshot saved to interop/out/', T, async () => {
    await pageA.fill('#echo-input', 'draft message');
    const file = path.join(OUT_DIR, 'demo-page.png');
    await pageA.screenshot({ path: file, fullPage: true });
    await pageB.screenshot({ path: path.join(OUT_DIR, 'demo-page-b.png'), fullPage: true });
    assert.ok(fs.statSync(file).size > 1000, 'screenshot is not empty');
  });
});

test('Chromium negotiates permessage-deflate with a server started with -deflate', T, async (t) => {
  const s = await startServer('browser-deflate-server', ['-deflate']);
  const page = watch(await context.newPage(), 'deflate page');
  // The page first: the demo page reconnects to a server that is gone,
  // which the page-error check would count.
  t.after(async () => {
    try { await page.close(); } finally { await s.kill(); }
  });
  const res = await page.goto(s.url('/'), { waitUntil: 'load' });
  assert.equal(res.status(), 200);
  const result = await page.evaluate(async () => {
    const ws = new WebSocket(`ws://${location.host}/echo`);
    ws.binaryType = 'arraybuffer';
    const inbox = [];
    let wake = null;
    ws.onmessage = (ev) => { inbox.push(ev.data); if (wake) wake(); };
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('ws error')); });
    const next = async () => {
      while (!inbox.length) await new Promise((r) => { wake = r; });
      return inbox.shift();
    };
    const failures = [];
    for (const n of [0, 10, 511, 512, 4096, 65536, 1024 * 1024]) {
      const text = 'compressible text, '.repeat(Math.ceil(n / 19)).slice(0, n);
      ws.send(text);
      const got = await next();
      if (got !== text) failures.push(`text ${n}: got length ${got.length ?? got.byteLength}`);
      const bin = new Uint8Array(n);
      for (let i = 0; i < n; i++) bin[i] = i % 7;
      ws.send(bin);
      const b = new Uint8Array(await next());
      if (b.length !== n || b.some((v, i) => v !== bin[i])) failures.push(`binary ${n}: payload differs`);
    }
    const extensions = ws.extensions;
    ws.close(1000);
    return { extensions, failures };
  });
  assert.match(result.extensions, /^permessage-deflate/, `extensions: ${result.extensions}`);
  assert.deepEqual(result.failures, []);
});

describe("Chromium's own WebSocket client against the server", () => {
  let page;
  before(async () => { page = await openDemo('raw page'); });

  test('text and binary echo at frame-size boundaries', T, async () => {
    const result = await page.evaluate(async () => {
      const sizes = [0, 1, 125, 126, 65535, 65536, 1024 * 1024];
      const ws = new WebSocket(`ws://${location.host}/echo`);
      ws.binaryType = 'arraybuffer';
      const inbox = [];
      let wake = null;
      ws.onmessage = (ev) => { inbox.push(ev.data); if (wake) wake(); };
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('ws error')); });
      const next = async () => {
        while (!inbox.length) await new Promise((r) => { wake = r; });
        return inbox.shift();
      };
      const failures = [];
      for (const n of sizes) {
        const text = 'x'.repeat(n);
        ws.send(text);
        const t = await next();
        if (typeof t !== 'string' || t !== text) failures.push(`text ${n}: got ${typeof t} of length ${t.length ?? t.byteLength}`);
        const bin = new Uint8Array(n);
        for (let i = 0; i < n; i++) bin[i] = (i * 31 + n) & 0xff;
        ws.send(bin);
        const b = await next();
        if (!(b instanceof ArrayBuffer)) { failures.push(`binary ${n}: got ${typeof b}`); continue; }
        const got = new Uint8Array(b);
        if (got.length !== n || got.some((v, i) => v !== bin[i])) failures.push(`binary ${n}: payload differs`);
      }
      ws.close(1000);
      return failures;
    });
    assert.deepEqual(result, []);
  });

  test('server close via /close?code=4002&reason=server+bye reaches the browser', T, async () => {
    const ev = await page.evaluate(() => new Promise((resolve) => {
      const ws = new WebSocket(`ws://${location.host}/close?code=4002&reason=server+bye`);
      ws.onclose = (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
    }));
    assert.deepEqual(ev, { code: 4002, reason: 'server bye', wasClean: true });
  });

  test('browser close with 4001 "bye" is answered with 4001', T, async () => {
    const ev = await page.evaluate(() => new Promise((resolve) => {
      const ws = new WebSocket(`ws://${location.host}/echo`);
      ws.onopen = () => ws.close(4001, 'bye');
      ws.onclose = (e) => resolve({ code: e.code, wasClean: e.wasClean });
    }));
    assert.deepEqual(ev, { code: 4001, wasClean: true });
  });

  test('a page from another origin is refused (403 → close 1006)', T, async () => {
    const port = new URL(server.base).port;
    const other = watch(await context.newPage(), 'other-origin page');
    // The page is loaded from OTHER_HOST (still 127.0.0.1) and connects to
    // 127.0.0.1, so Origin's host differs from Host.
    await other.goto(`http://${OTHER_HOST}:${port}/`, { waitUntil: 'load' });
    const ev = await other.evaluate((target) => new Promise((resolve) => {
      const ws = new WebSocket(target);
      let opened = false;
      ws.onopen = () => { opened = true; ws.close(); };
      ws.onclose = (e) => resolve({ opened, code: e.code });
    }), `ws://127.0.0.1:${port}/echo`);
    assert.deepEqual(ev, { opened: false, code: 1006 });
    await other.close();
  });
});

test('no page errors or console errors so far', () => {
  // Chromium logs the refused cross-origin handshake to the console; that
  // one is expected.
  const real = problems.filter((p) => !p.startsWith('other-origin page:'));
  assert.deepEqual(real, []);
});

/**
 * A reverse proxy on 127.0.0.1 that serves the example server under
 * `prefix` (e.g. /demo/): /demo/x goes to the server's /x, plain HTTP and
 * WebSocket upgrades alike, with the Host header left as the browser sent
 * it (what nginx does with `proxy_set_header Host $http_host`). Anything
 * outside the prefix answers 404.
 */
async function prefixProxy(target, prefix) {
  const { hostname, port } = new URL(target);
  const strip = (url) => (url.startsWith(prefix) ? '/' + url.slice(prefix.length) : null);
  const proxy = http.createServer((req, res) => {
    const p = strip(req.url);
    if (p === null) { res.writeHead(404).end('not under ' + prefix); return; }
    const up = http.request({ host: hostname, port, method: req.method, path: p, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  proxy.on('upgrade', (req, sock, head) => {
    const p = strip(req.url);
    if (p === null) { sock.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n'); return; }
    const up = net.connect(+port, hostname, () => {
      let raw = `${req.method} ${p} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(raw + '\r\n');
      up.write(head);
      up.pipe(sock);
      sock.pipe(up);
    });
    up.on('error', () => sock.destroy());
    sock.on('error', () => up.destroy());
  });
  proxy.listen(0, '127.0.0.1');
  await new Promise((resolve) => proxy.once('listening', resolve));
  return { url: `http://127.0.0.1:${proxy.address().port}${prefix}`, close: () => proxy.close() };
}

test('the demo page works behind a reverse proxy that serves it under a path prefix', T, async (t) => {
  const proxy = await prefixProxy(server.base, '/demo/');
  t.after(() => proxy.close());
  const page = await context.newPage();
  t.after(() => page.close());
  const res = await page.goto(proxy.url, { waitUntil: 'load' });
  assert.equal(res.status(), 200, 'GET /demo/ through the proxy');
  // The proxy passes /demo/echo and /demo/chat on as /echo and /chat; a
  // page that connects to the origin's /echo and /chat gets the proxy's 404.
  await page.locator('#status[data-state="open"]').waitFor({ timeout: UI_TIMEOUT }).catch(async () => {
    assert.fail(`the page never connected behind /demo/: status ${JSON.stringify(await page.locator('#status-text').textContent())}, ` +
      `chat ${JSON.stringify(await page.locator('#chat-state .label').textContent())}, ` +
      `endpoint ${JSON.stringify(await page.locator('#endpoint').textContent())}`);
  });
  await page.fill('#echo-input', 'through the proxy');
  await page.press('#echo-input', 'Enter');
  await expectLogged(page, '#echo-log', 'through the proxy');
});

describe('shutdown seen from the page', () => {
  test('SIGTERM: the page sees close 1001 and shows it is disconnected; server exits 0', {
    ...T,
    skip: process.env.GINWS_ECHO_URL ? 'GINWS_ECHO_URL points at a server these tests did not start' : false,
  }, async () => {
    const page = await openDemo('shutdown page');
    const codes = page.evaluate(() => new Promise((resolve) => {
      const ws = new WebSocket(`ws://${location.host}/echo`);
      ws.onopen = () => {
        ws.onclose = (e) => resolve(e.code);
        window.__ready = true;
      };
    }));
    await page.waitForFunction(() => window.__ready === true, null, { timeout: UI_TIMEOUT });
    const exit = await server.terminate();
    assert.equal(await codes, 1001);
    // The page's own sockets report the 1001 in their logs.
    await page.locator('#chat-log li.meta', { hasText: 'closed 1001' }).first().waitFor({ timeout: UI_TIMEOUT });
    await page.locator('#echo-log li.meta', { hasText: 'closed 1001' }).first().waitFor({ timeout: UI_TIMEOUT });
    await page.screenshot({ path: path.join(OUT_DIR, 'demo-page-disconnected.png') });
    assert.deepEqual(exit, { code: 0, signal: null });
  });
});
