'use strict'
// Node.js peer of the ginws benchmark: a Fastify app with @fastify/websocket
// (which uses the ws package), echoing every message back whole with its
// type on /echo. No logging, no compression, 16 MiB message limit, no origin
// check. Usage: node server.js -addr 127.0.0.1:18000
const Fastify = require('fastify')
const websocket = require('@fastify/websocket')

function parseArgs (argv) {
  let addr = '127.0.0.1:18000'
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '-addr' || a === '--addr') addr = argv[++i]
    else if (a.startsWith('-addr=') || a.startsWith('--addr=')) addr = a.slice(a.indexOf('=') + 1)
    else if (a === '-lib' || a === '--lib') i++ // accepted for symmetry with the Go server
    else {
      console.error(`server.js: unknown argument ${a}`)
      process.exit(2)
    }
  }
  const i = addr.lastIndexOf(':')
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '')
  if (!(host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host))) {
    console.error(`server.js: -addr ${addr} is not a loopback address; the benchmark only listens on 127.0.0.0/8 or ::1`)
    process.exit(2)
  }
  return { host, port: Number(addr.slice(i + 1)) }
}

async function main () {
  const { host, port } = parseArgs(process.argv.slice(2))
  const app = Fastify({ logger: false })
  await app.register(websocket, {
    options: {
      maxPayload: 16 * 1024 * 1024,
      perMessageDeflate: false
    }
  })
  app.get('/echo', { websocket: true }, (socket) => {
    socket.on('message', (data, isBinary) => {
      socket.send(data, { binary: isBinary })
    })
    socket.on('error', () => {})
  })
  const shutdown = () => process.exit(0)
  process.on('SIGTERM', shutdown)
  process.on('SIGINT', shutdown)
  await app.listen({ host, port })
  const a = app.server.address()
  const shown = a.family === 'IPv6' || a.family === 6 ? `[${a.address}]` : a.address
  console.log(`listening on http://${shown}:${a.port}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
