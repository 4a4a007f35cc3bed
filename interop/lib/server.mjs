// Starts and stops the ginws example server (examples/echo) for the tests.
//
// Where the server comes from, in order of preference:
//   GINWS_ECHO_URL  base URL of a server that is already running (e.g.
//                   http://127.0.0.1:8080). Tests that need control over the
//                   process (the SIGTERM test) are skipped in that mode.
//   GINWS_ECHO_BIN  path of an already built example server binary.
//   otherwise       `go build ./examples/echo` into a temp dir.
//
// The binary is started as `BIN -addr 127.0.0.1:PORT` on a free port; it is
// ready once it prints a line containing `listening on http://127.0.0.1:PORT`.

import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const INTEROP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = path.resolve(INTEROP_DIR, '..');
export const OUT_DIR = path.join(INTEROP_DIR, 'out');

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

let builtBin = null;

/** Returns the path of the example server binary, building it if needed. */
export async function echoBinary() {
  if (process.env.GINWS_ECHO_BIN) {
    const bin = path.resolve(process.env.GINWS_ECHO_BIN);
    fs.accessSync(bin, fs.constants.X_OK);
    return bin;
  }
  if (builtBin) return builtBin;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ginws-echo-'));
  const bin = path.join(dir, 'echo');
  try {
    await execFileP('go', ['build', '-o', bin, './examples/echo'], {
      cwd: REPO_ROOT,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    throw new Error(`go build ./examples/echo failed:\n${err.stderr || err.message}`);
  }
  builtBin = bin;
  return bin;
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * A running example server.
 *  - base:    http://127.0.0.1:PORT
 *  - wsBase:  ws://127.0.0.1:PORT
 *  - managed: true when this process started it (and may stop it)
 */
class EchoServer {
  constructor({ base, proc = null, logFile = null }) {
    this.base = base.replace(/\/+$/, '');
    this.wsBase = this.base.replace(/^http/, 'ws');
    this.host = new URL(this.base).host;
    this.proc = proc;
    this.logFile = logFile;
    this.managed = proc !== null;
    this.exited = proc
      ? new Promise((resolve) => {
          proc.once('exit', (code, signal) => resolve({ code, signal }));
        })
      : null;
    this.exitInfo = null;
    if (this.exited) this.exited.then((info) => { this.exitInfo = info; });
  }

  url(p) { return this.base + p; }
  wsUrl(p) { return this.wsBase + p; }

  get running() { return this.managed && this.exitInfo === null; }

  /** Sends SIGTERM and resolves with { code, signal } once the process exits. */
  async terminate(timeoutMs = STOP_TIMEOUT_MS) {
    if (!this.managed) throw new Error('server not started by the tests');
    if (this.exitInfo) return this.exitInfo;
    this.proc.kill('SIGTERM');
    return withTimeout(this.exited, timeoutMs, `server did not exit within ${timeoutMs} ms of SIGTERM`);
  }

  /** Last-resort cleanup: kill the process if it is still around. */
  async kill() {
    if (!this.running) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

/**
 * Starts the example server (or attaches to GINWS_ECHO_URL).
 * name is used for the log file under interop/out/; extraArgs are added to
 * the command line after `-addr 127.0.0.1:PORT`.
 */
export async function startServer(name = 'server', extraArgs = []) {
  if (process.env.GINWS_ECHO_URL) {
    return new EchoServer({ base: process.env.GINWS_ECHO_URL });
  }
  const bin = await echoBinary();
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const logFile = path.join(OUT_DIR, `${name}.log`);
  fs.writeFileSync(logFile, '');
  let lastErr;
  // A port picked by freePort() can in rare cases be taken before the server
  // binds it; try a few ports before giving up.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      return await launch(bin, port, logFile, extraArgs);
    } catch (err) {
      lastErr = err;
    }
  }
  throw lastErr;
}

async function launch(bin, port, logFile, extraArgs) {
  const addr = `127.0.0.1:${port}`;
  const log = fs.createWriteStream(logFile, { flags: 'a' });
  log.on('error', () => {});
  const args = ['-addr', addr, ...extraArgs];
  log.write(`--- ${new Date().toISOString()} ${bin} ${args.join(' ')}\n`);
  const proc = spawn(bin, args, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const server = new EchoServer({ base: `http://${addr}`, proc, logFile });
  const want = `listening on http://${addr}`;

  const ready = new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk) => {
      log.write(chunk);
      if (seen === null) return;
      seen += chunk.toString('utf8');
      if (seen.includes(want)) {
        seen = null;
        resolve();
      } else if (seen.length > 64 * 1024) {
        seen = seen.slice(-4096);
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('error', reject);
    proc.once('close', () => log.end());
    server.exited.then(({ code, signal }) => {
      reject(new Error(`server exited before it was ready (code ${code}, signal ${signal}); see ${logFile}`));
    });
  });

  try {
    await withTimeout(ready, READY_TIMEOUT_MS, `server did not print "${want}" within ${READY_TIMEOUT_MS} ms; see ${logFile}`);
  } catch (err) {
    await server.kill();
    throw err;
  }
  return server;
}

export function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
