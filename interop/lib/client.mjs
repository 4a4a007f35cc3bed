// A small promise-based wrapper around a `ws` client connection, so tests can
// await the next message, the close frame, or a pong.

import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { withTimeout } from './server.mjs';

export const DEFAULT_TIMEOUT_MS = 10_000;

export class Client {
  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    this.queue = [];     // messages received but not yet taken
    this.waiters = [];   // pending next() calls
    this.pongs = [];
    this.pongWaiters = [];
    this.closeInfo = null;
    this.error = null;

    ws.on('message', (data, isBinary) => {
      const msg = { data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(msg);
      else this.queue.push(msg);
    });
    ws.on('pong', (data) => {
      const w = this.pongWaiters.shift();
      if (w) w.resolve(data);
      else this.pongs.push(data);
    });
    ws.on('error', (err) => { this.error = err; });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        const why = new Error(
          `${this.label}: connection closed (code ${code}, reason ${JSON.stringify(this.closeInfo.reason)})` +
          (this.error ? ` after error: ${this.error.message}` : '') +
          ' while waiting for a message');
        for (const w of this.waiters.splice(0)) w.reject(why);
        for (const w of this.pongWaiters.splice(0)) w.reject(why);
        resolve(this.closeInfo);
      });
    });
  }

  /** Resolves with the next message { data: Buffer, isBinary }. */
  next(timeoutMs = DEFAULT_TIMEOUT_MS) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closeInfo) {
      return Promise.reject(new Error(`${this.label}: already closed (code ${this.closeInfo.code})`));
    }
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      this.waiters.push(waiter);
    });
    return withTimeout(p, timeoutMs, `${this.label}: no message within ${timeoutMs} ms`).catch((err) => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
      throw err;
    });
  }

  /** Resolves with the payload of the next pong. */
  nextPong(timeoutMs = DEFAULT_TIMEOUT_MS) {
    if (this.pongs.length) return Promise.resolve(this.pongs.shift());
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      this.pongWaiters.push(waiter);
    });
    return withTimeout(p, timeoutMs, `${this.label}: no pong within ${timeoutMs} ms`).catch((err) => {
      const i = this.pongWaiters.indexOf(waiter);
      if (i >= 0) this.pongWaiters.splice(i, 1);
      throw err;
    });
  }

  /** Sends a text (string) or binary (Buffer) message and waits until it is flushed. */
  send(data) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, { binary: typeof data !== 'string' }, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Resolves with { code, reason } once the connection is fully closed. */
  waitClosed(timeoutMs = DEFAULT_TIMEOUT_MS) {
    return withTimeout(this.closed, timeoutMs, `${this.label}: not closed within ${timeoutMs} ms`);
  }

  /** Closes without waiting for anything; for cleanup. */
  terminate() {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }
}

/**
 * Opens a WebSocket to url with `ws`. permessage-deflate is off unless
 * options.perMessageDeflate says otherwise.
 */
export async function connect(url, options = {}, timeoutMs = DEFAULT_TIMEOUT_MS) {
  const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs, ...options });
  const client = new Client(ws, new URL(url).pathname);
  const opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (req, res) => {
      res.resume();
      req.destroy();
      reject(new Error(`handshake to ${url} answered HTTP ${res.statusCode}`));
    });
    ws.once('error', reject);
    ws.once('close', (code) => reject(new Error(`closed (code ${code}) before open`)));
  });
  try {
    await withTimeout(opened, timeoutMs, `handshake to ${url} did not complete within ${timeoutMs} ms`);
  } catch (err) {
    client.terminate();
    throw err;
  }
  return client;
}

/**
 * Attempts a handshake and resolves with the HTTP status the server answered
 * with (101 when the upgrade succeeded; the connection is then closed).
 */
export function handshakeStatus(url, options = {}, timeoutMs = DEFAULT_TIMEOUT_MS) {
  const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs, ...options });
  ws.on('error', () => {});
  const p = new Promise((resolve, reject) => {
    ws.once('upgrade', (res) => resolve(res.statusCode));
    ws.once('unexpected-response', (req, res) => {
      res.resume();
      req.destroy();
      resolve(res.statusCode);
    });
    ws.once('error', reject);
  });
  return withTimeout(p, timeoutMs, `no handshake answer from ${url}`).finally(() => {
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
  });
}

/** ASCII text of exactly n bytes, with a recognisable, non-constant pattern. */
export function asciiText(n, seed = 0) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-';
  const chunk = [];
  for (let i = 0; i < Math.min(n, 4096); i++) chunk.push(alphabet[(i * 7 + seed + (i >> 6)) % alphabet.length]);
  const block = chunk.join('');
  if (n <= block.length) return block;
  return block.repeat(Math.floor(n / block.length)) + block.slice(0, n % block.length);
}

/** Pseudo-random bytes (deterministic per seed), so failures are reproducible. */
export function binaryData(n, seed = 1) {
  const buf = Buffer.allocUnsafe(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}

/** Asserts two byte sequences are equal without dumping megabytes on failure. */
export function assertBytesEqual(actual, expected, label = 'payload') {
  const a = Buffer.isBuffer(actual) ? actual : Buffer.from(actual);
  const e = Buffer.isBuffer(expected) ? expected : Buffer.from(expected);
  if (a.equals(e)) return;
  let i = 0;
  while (i < a.length && i < e.length && a[i] === e[i]) i++;
  const around = (b) => b.subarray(Math.max(0, i - 8), i + 8).toString('hex');
  assert.fail(
    `${label}: got ${a.length} bytes, want ${e.length} bytes; first difference at byte ${i} ` +
    `(got …${around(a)}…, want …${around(e)}…)`);
}
