// Interop tests: the ginws example server driven by the `ws` Node client,
// an implementation written independently of ginws.
//
// Run: node --test test/interop.test.mjs   (from interop/, see run.sh)

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  asciiText,
  assertBytesEqual,
  binaryData,
  connect,
  handshakeStatus,
} from '../lib/client.mjs';
import { startServer } from '../lib/server.mjs';

const SIZES = [0, 1, 125, 126, 65535, 65536, 1024 * 1024];
const T = { timeout: 30_000 };

let server;
const clients = [];

/** connect() that also registers the client for cleanup. */
async function open(path, options) {
  const c = await connect(server.wsUrl(path), options);
  clients.push(c);
  return c;
}

before(async () => {
  server = await startServer('interop-server');
});

after(async () => {
  for (const c of clients) c.terminate();
  if (server) await server.kill();
});

describe('HTTP routes', () => {
  test('GET /healthz answers 200 ok', T, async () => {
    const res = await fetch(server.url('/healthz'));
    assert.equal(res.status, 200);
    assert.equal((await res.text()).trim(), 'ok');
  });

  for (const route of ['/echo', '/stream', '/object', '/chat']) {
    test(`plain GET ${route} (no upgrade) answers 404`, T, async () => {
      const res = await fetch(server.url(route));
      await res.arrayBuffer();
      assert.equal(res.status, 404);
    });
  }

  test('GET / serves the demo page', T, async () => {
    const res = await fetch(server.url('/'));
    const body = await res.text();
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') || '', /^text\/html/);
    for (const id of ['chat-log', 'echo-log', 'chat-input', 'chat-send', 'echo-input', 'echo-send', 'status']) {
      assert.ok(body.includes(`id="${id}"`), `page has no element with id "${id}"`);
    }
  });
});

describe('handshake', () => {
  test('an upgrade without an Origin header is accepted', T, async () => {
    assert.equal(await handshakeStatus(server.wsUrl('/echo')), 101);
  });

  test('a same-origin upgrade is accepted', T, async () => {
    assert.equal(await handshakeStatus(server.wsUrl('/echo'), { origin: server.base }), 101);
  });

  test('an upgrade whose Origin host differs from Host answers 403', T, async () => {
    assert.equal(await handshakeStatus(server.wsUrl('/echo'), { origin: 'http://other.example' }), 403);
  });

  test('offering permessage-deflate does not break the handshake or echo', T, async () => {
    // Whether or not the server accepts the extension, the connection must
    // work and agree on what was negotiated.
    const c = await open('/echo', { perMessageDeflate: { threshold: 0 } });
    assert.ok(c.ws.extensions === '' || c.ws.extensions.startsWith('permessage-deflate'),
      `unexpected extensions ${JSON.stringify(c.ws.extensions)}`);
    const text = asciiText(5000);
    await c.send(text);
    const m = await c.next();
    assert.equal(m.isBinary, false);
    assert.equal(m.data.toString('utf8'), text);
    c.ws.close(1000);
    await c.waitClosed();
  });
});

describe('/echo', () => {
  let c;
  before(async () => { c = await open('/echo'); });
  after(async () => {
    if (!c || c.closeInfo) return;
    c.ws.close(1000);
    await c.waitClosed().catch(() => c.terminate());
  });

  for (const size of SIZES) {
    test(`text message of ${size} bytes comes back whole, as text`, T, async () => {
      const text = asciiText(size, size);
      await c.send(text);
      const m = await c.next();
      assert.equal(m.isBinary, false, 'echo of a text message must be a text message');
      assertBytesEqual(m.data, Buffer.from(text, 'utf8'));
    });
  }

  for (const size of SIZES) {
    test(`binary message of ${size} bytes comes back whole, as binary`, T, async () => {
      const data = binaryData(size, size + 1);
      await c.send(data);
      const m = await c.next();
      assert.equal(m.isBinary, true, 'echo of a binary message must be a binary message');
      assertBytesEqual(m.data, data);
    });
  }

  test('multi-byte UTF-8 text comes back unchanged', T, async () => {
    const text = 'héllo wörld — ünïcödé ✓ 日本語 \u{1F600}\u{1F680} '.repeat(3000);
    await c.send(text);
    const m = await c.next();
    assert.equal(m.isBinary, false);
    assert.equal(m.data.toString('utf8'), text);
  });

  test('1000 messages sent back to back come back in order with their types', T, async () => {
    const sent = [];
    for (let i = 0; i < 1000; i++) {
      const size = i % 100 === 99 ? 70_000 : (i * 37) % 600;
      const msg = i % 2 === 0
        ? { isBinary: false, data: Buffer.from(`#${i}:` + asciiText(size, i), 'utf8') }
        : { isBinary: true, data: Buffer.concat([Buffer.from(`#${i}:`), binaryData(size, i)]) };
      sent.push(msg);
    }
    // Queue everything before reading anything.
    const flushed = sent.map((m) => c.send(m.isBinary ? m.data : m.data.toString('utf8')));
    for (let i = 0; i < sent.length; i++) {
      const m = await c.next();
      assert.equal(m.isBinary, sent[i].isBinary, `message ${i}: wrong type`);
      assertBytesEqual(m.data, sent[i].data, `message ${i}`);
    }
    await Promise.all(flushed);
  });

  test('a ping is answered with a pong carrying the same payload', T, async () => {
    const payload = Buffer.from('ginws-interop-ping');
    c.ws.ping(payload);
    assertBytesEqual(await c.nextPong(), payload, 'pong payload');
    // The connection still echoes afterwards.
    await c.send('after ping');
    assert.equal((await c.next()).data.toString(), 'after ping');
  });
});

/** Reads messages until `want` bytes have arrived; returns the concatenation and message types. */
async function readBytes(c, want) {
  const parts = [];
  const types = new Set();
  let got = 0;
  while (got < want) {
    const m = await c.next();
    parts.push(m.data);
    types.add(m.isBinary ? 'binary' : 'text');
    got += m.data.length;
  }
  return { data: Buffer.concat(parts), types, messages: parts.length };
}

describe('/stream', () => {
  test('text: the concatenation of what comes back equals what was sent', T, async (t) => {
    const c = await open('/stream');
    const chunks = [];
    for (let i = 0; i < 200; i++) chunks.push(asciiText((i * 211) % 3000 + 1, i));
    chunks.push(asciiText(300_000, 7));
    for (const s of chunks) await c.send(s);
    const want = Buffer.from(chunks.join(''), 'utf8');
    const got = await readBytes(c, want.length);
    assertBytesEqual(got.data, want, 'stream bytes');
    t.diagnostic(`sent ${chunks.length} text messages, got ${got.messages} back (${[...got.types].join('+')})`);
    c.ws.close(1000);
    await c.waitClosed();
  });

  test('text with multi-byte UTF-8: the concatenation equals what was sent', T, async (t) => {
    const c = await open('/stream');
    const chunks = [];
    for (let i = 0; i < 100; i++) chunks.push('ä€\u{1F600}x'.repeat((i % 17) + 1) + `|${i}|`);
    chunks.push('日本語テキスト✓'.repeat(20_000));
    for (const s of chunks) await c.send(s);
    const want = Buffer.from(chunks.join(''), 'utf8');
    const got = await readBytes(c, want.length);
    assertBytesEqual(got.data, want, 'stream bytes');
    t.diagnostic(`sent ${chunks.length} text messages, got ${got.messages} back (${[...got.types].join('+')})`);
    c.ws.close(1000);
    await c.waitClosed();
  });

  test('binary: the concatenation of what comes back equals what was sent', T, async (t) => {
    const c = await open('/stream');
    const chunks = [];
    for (let i = 0; i < 200; i++) chunks.push(binaryData((i * 389) % 5000 + 1, i + 100));
    chunks.push(binaryData(1024 * 1024, 42));
    for (const b of chunks) await c.send(b);
    const want = Buffer.concat(chunks);
    const got = await readBytes(c, want.length);
    assertBytesEqual(got.data, want, 'stream bytes');
    t.diagnostic(`sent ${chunks.length} binary messages, got ${got.messages} back (${[...got.types].join('+')})`);
    c.ws.close(1000);
    await c.waitClosed();
  });
});

describe('/object', () => {
  test('each message comes back as exactly one message', T, async (t) => {
    const c = await open('/object');
    const sent = [];
    SIZES.forEach((size, i) => {
      sent.push({ isBinary: false, data: Buffer.from(asciiText(size, i), 'utf8') });
      sent.push({ isBinary: true, data: binaryData(size, i + 500) });
    });
    for (let i = 0; i < 50; i++) sent.push({ isBinary: i % 2 === 1, data: Buffer.from(JSON.stringify({ seq: i, pad: asciiText(i * 13) })) });
    for (const m of sent) await c.send(m.isBinary ? m.data : m.data.toString('utf8'));
    // A final marker: if any message had been split or merged, the marker
    // would not arrive as message number sent.length.
    const marker = 'end-of-object-test';
    await c.send(marker);

    const typeMismatches = [];
    for (let i = 0; i < sent.length; i++) {
      const m = await c.next();
      assertBytesEqual(m.data, sent[i].data, `message ${i}`);
      if (m.isBinary !== sent[i].isBinary) typeMismatches.push(i);
    }
    const last = await c.next();
    assert.equal(last.data.toString('utf8'), marker, 'an extra message arrived after the last echo');
    if (typeMismatches.length) {
      t.diagnostic(`note: ${typeMismatches.length} messages came back with a different type (text/binary), e.g. #${typeMismatches[0]}`);
    }
    c.ws.close(1000);
    await c.waitClosed();
  });
});

describe('/chat', () => {
  test('a text message is broadcast to every client, the sender included', T, async () => {
    const a = await open('/chat');
    const b = await open('/chat');
    // Each client sees its own "ready" message come back, which proves the
    // server has it registered; other clients' "ready" messages are skipped.
    const nextChat = async (c) => {
      for (;;) {
        const m = await c.next();
        if (!m.data.toString('utf8').endsWith(' ready')) return m;
      }
    };
    for (const [name, c] of [['a', a], ['b', b]]) {
      await c.send(`${name} ready`);
      for (;;) {
        const m = await c.next();
        if (m.data.toString('utf8') === `${name} ready`) break;
      }
    }
    await a.send('hello from a');
    for (const [name, c] of [['a', a], ['b', b]]) {
      const m = await nextChat(c);
      assert.equal(m.isBinary, false, `${name}: chat message must be text`);
      assert.equal(m.data.toString('utf8'), 'hello from a', `${name} got the wrong message`);
    }
    a.ws.close(1000);
    b.ws.close(1000);
    await Promise.all([a.waitClosed(), b.waitClosed()]);
  });
});

describe('closing', () => {
  test('client closes with 4001 "bye" and gets 4001 back', T, async (t) => {
    const c = await open('/echo');
    await c.send('before close');
    await c.next();
    c.ws.close(4001, 'bye');
    const { code, reason } = await c.waitClosed();
    assert.equal(code, 4001, 'the server should echo the close code');
    t.diagnostic(`server close reason: ${JSON.stringify(reason)}`);
  });

  test('server closes via /close?code=4002&reason=server+bye', T, async () => {
    const c = await open('/close?code=4002&reason=server+bye');
    const { code, reason } = await c.waitClosed();
    assert.equal(code, 4002);
    assert.equal(reason, 'server bye');
  });

  test('server closes via /close with a reason that is not UTF-8: the close frame is still valid', T, async () => {
    // CloseWith(4003, "bad \xff") must not put invalid UTF-8 on the wire
    // (RFC 6455 section 5.5.1): ws fails such a frame with "invalid UTF-8
    // sequence", answers 1007 and reports 1006.
    const c = await open('/close?code=4003&reason=bad+%FF');
    const { code, reason } = await c.waitClosed();
    assert.equal(c.error?.message, undefined, 'ws found the close frame invalid');
    assert.notEqual(code, 1006, 'the connection was not closed cleanly');
    assert.ok(Buffer.from(reason, 'utf8').length <= 123, `reason ${JSON.stringify(reason)}`);
  });

  test('server closes via /close?code=1000 with an empty reason', T, async () => {
    const c = await open('/close?code=1000&reason=');
    const { code, reason } = await c.waitClosed();
    assert.equal(code, 1000);
    assert.equal(reason, '');
  });
});

test('permessage-deflate negotiated and used (server started with -deflate)', {
  ...T,
  skip: process.env.GINWS_TEST_DEFLATE === '0' ? 'GINWS_TEST_DEFLATE=0' : false,
}, async (t) => {
  // A server of its own, started with -deflate (unless GINWS_ECHO_URL is
  // set, in which case that server has to have deflate on).
  const s = process.env.GINWS_ECHO_URL ? server : await startServer('interop-deflate-server', ['-deflate']);
  t.after(() => (s === server ? undefined : s.kill()));
  const c = await connect(s.wsUrl('/echo'), { perMessageDeflate: { threshold: 0 } });
  clients.push(c);
  assert.match(c.ws.extensions, /^permessage-deflate/, 'server did not accept permessage-deflate');
  for (const size of SIZES) {
    const text = asciiText(size, size);
    await c.send(text);
    const t1 = await c.next();
    assert.equal(t1.isBinary, false);
    assertBytesEqual(t1.data, Buffer.from(text), `deflated text of ${size} bytes`);
    const bin = binaryData(size, size);
    await c.send(bin);
    const b1 = await c.next();
    assert.equal(b1.isBinary, true);
    assertBytesEqual(b1.data, bin, `deflated binary of ${size} bytes`);
  }
  // Many small compressible messages exercise context takeover.
  for (let i = 0; i < 200; i++) {
    const text = `message ${i} ` + 'the same words again and again '.repeat(i % 20);
    await c.send(text);
    assert.equal((await c.next()).data.toString('utf8'), text, `message ${i}`);
  }
  c.ws.close(1000);
  await c.waitClosed();

  // Without context takeover on either side, every message stands alone.
  const n = await connect(s.wsUrl('/echo'), {
    perMessageDeflate: { threshold: 0, clientNoContextTakeover: true, serverNoContextTakeover: true },
  });
  clients.push(n);
  // ws lists only extension names; its inflater would fail on a frame that
  // refers back to an earlier message, so the echoes below check the rest.
  assert.match(n.ws.extensions, /^permessage-deflate/, n.ws.extensions);
  for (let i = 0; i < 100; i++) {
    const text = `no takeover ${i} ` + 'repeated words compress well '.repeat(1 + (i % 30));
    await n.send(text);
    assert.equal((await n.next()).data.toString('utf8'), text, `no-takeover message ${i}`);
  }
  n.ws.close(1000);
  await n.waitClosed();
});

// Keep this last: it stops the server.
test('SIGTERM: open clients get close 1001, then the server exits 0', {
  timeout: 30_000,
  skip: process.env.GINWS_ECHO_URL
    ? 'GINWS_ECHO_URL points at a server these tests did not start'
    : false,
}, async () => {
  const routes = ['/echo', '/stream', '/object', '/chat'];
  const live = [];
  for (const r of routes) {
    const c = await open(r);
    await c.send(`ping ${r}`);
    await c.next(); // the connection is fully set up on the server side
    live.push([r, c]);
  }
  const exit = server.terminate();
  const closes = await Promise.all(live.map(([, c]) => c.waitClosed(15_000)));
  closes.forEach(({ code }, i) => assert.equal(code, 1001, `${live[i][0]}: close code at shutdown`));
  const { code, signal } = await exit;
  assert.equal(signal, null, `server died from signal ${signal}`);
  assert.equal(code, 0, 'server exit code after SIGTERM');
});
