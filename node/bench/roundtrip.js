#!/usr/bin/env node
// Round-trip time of a 64-byte call, Node <-> Rust next to Rust <-> Rust, over
// every transport in this build (a benchmark, not a test: `make bench-node`).
//
//   mem:   in one process: Node client -> Node server, and Rust -> Rust
//          (target/release/examples/roundtrip mem).
//   other: across processes: Rust -> Rust (the Rust peer serving), Node ->
//          Rust with `await call()` and with `callSync()`, Rust -> Node.
//
// Prints medians (and p99) in microseconds and each one's ratio to Rust <-> Rust.
//
// Placement: `taskset -c 0 node bench/roundtrip.js` runs everything on one
// CPU (the Rust processes inherit the mask); with IPCALL_BENCH_PEER_CPU=1 as
// well, the server's side of each row runs on CPU 1 instead (cross-CPU): the
// Rust server of the first rows, the Rust client of "Rust -> Node" (the Node
// server stays on the CPU node runs on), and the Rust server of "Rust -> Rust"
// while its Rust client stays with node.
'use strict'

const { spawn } = require('node:child_process')
const path = require('node:path')
const readline = require('node:readline')
const ipcall = require('..')

const targetDir = process.env.CARGO_TARGET_DIR || path.join(__dirname, '..', '..', 'target')
const roundtripBin = path.join(targetDir, 'release', 'examples', 'roundtrip')
const peerBin = path.join(targetDir, 'release', 'examples', 'peer')
const ITERS = Number(process.env.ITERS || 20000)
const SIZE = 64
const PEER_CPU = process.env.IPCALL_BENCH_PEER_CPU

/** `command args` as spawn arguments; `onPeerCpu`: under `taskset -c $IPCALL_BENCH_PEER_CPU` when set. */
function placed(command, args, onPeerCpu) {
  return PEER_CPU === undefined || !onPeerCpu ? [command, args] : ['taskset', ['-c', PEER_CPU, command, ...args]]
}

function run(command, args, onPeerCpu = false) {
  return new Promise((resolve, reject) => {
    const child = spawn(...placed(command, args, onPeerCpu), { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk) => (out += chunk))
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${command} exited ${code}`))))
  })
}

function stats(samples) {
  samples.sort((a, b) => a - b)
  return { median_ns: samples[samples.length >> 1], p99_ns: samples[Math.floor(samples.length * 0.99)] }
}

/** Times sequential calls from Node: `await client.call()` or `client.callSync()`. */
async function nodeCalls(client, sync) {
  const message = Buffer.alloc(SIZE, 0x5a)
  const once = sync ? () => client.callSync(message) : () => client.call(message)
  for (let i = 0; i < Math.min(ITERS, 1000); i++) await once()
  const samples = new Array(ITERS)
  for (let i = 0; i < ITERS; i++) {
    const start = process.hrtime.bigint()
    await once()
    samples[i] = Number(process.hrtime.bigint() - start)
  }
  return stats(samples)
}

function echo(server) {
  return (async () => {
    for await (const req of server) req.reply(req.data)
  })()
}

async function startRustServer(kind) {
  const child = spawn(...placed(peerBin, ['serve', '--unique', kind], true), { stdio: ['ignore', 'pipe', 'inherit'] })
  const name = await new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', resolve)
    child.once('error', reject)
  })
  return { child, name: name.trim() }
}

async function benchKind(kind) {
  const rows = []
  if (kind === 'mem') {
    rows.push(['Rust -> Rust (one process)', await run(roundtripBin, ['mem', '--iters', String(ITERS), '--size', String(SIZE)])])
    const server = ipcall.Server.bindUnique('mem')
    const serving = echo(server)
    const client = ipcall.connect(server.name)
    rows.push(['Node -> Node (one process), await call()', await nodeCalls(client, false)])
    client.close()
    server.close()
    await serving
    return rows
  }
  const rust = await startRustServer(kind)
  try {
    rows.push(['Rust -> Rust', await run(roundtripBin, ['client', rust.name, '--iters', String(ITERS), '--size', String(SIZE)])])
    // One client each: a client that has made an async call is driven by
    // the event loop from then on (the core's pollable client), which is
    // not what a callSync()-only client pays.
    const syncClient = await ipcall.connectAsync(rust.name, { timeout: 10000 })
    rows.push(['Node -> Rust, callSync()', await nodeCalls(syncClient, true)])
    syncClient.close()
    const client = await ipcall.connectAsync(rust.name, { timeout: 10000 })
    rows.push(['Node -> Rust, await call()', await nodeCalls(client, false)])
    client.close()
  } finally {
    rust.child.kill()
  }
  const server = ipcall.Server.bindUnique(kind)
  const serving = echo(server)
  rows.push(['Rust -> Node (for await server)', await run(roundtripBin, ['client', server.name, '--iters', String(ITERS), '--size', String(SIZE)], true)])
  server.close()
  await serving
  return rows
}

async function main() {
  console.log(`ipcall round trip, ${SIZE} B request and reply, ${ITERS} sequential calls, median (p99) in µs`)
  if (PEER_CPU !== undefined) console.log(`servers' sides on CPU ${PEER_CPU} (IPCALL_BENCH_PEER_CPU)`)
  const us = (ns) => (ns / 1000).toFixed(1)
  const kinds = process.env.IPCALL_BENCH_KINDS ? process.env.IPCALL_BENCH_KINDS.split(',') : ['mem', 'unix', 'pipe', 'shm']
  for (const kind of kinds) {
    if (!ipcall.availableKinds().includes(kind)) {
      console.log(`\n${kind}: not available in this build, skipped`)
      continue
    }
    const rows = await benchKind(kind)
    const base = rows[0][1].median_ns
    console.log(`\n${kind}:`)
    for (const [label, { median_ns, p99_ns }] of rows) {
      console.log(`  ${label.padEnd(42)} ${us(median_ns).padStart(8)} (${us(p99_ns)})  x${(median_ns / base).toFixed(2)}`)
    }
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
