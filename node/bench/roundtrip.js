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
// Each transport's rows run in IPCALL_BENCH_ROUNDS (3) interleaved rounds: a
// row's figure is the median of its rounds' medians, and a ratio the median
// of the rounds' ratios (each round's row over the same round's reference),
// so that one round caught by a slow stretch of the machine moves neither.
// Each JavaScript row (a Node client, the Node server, zeromq.js) is measured
// after IPCALL_BENCH_WARMUP (20,000) calls of its own, discarded (see WARMUP).
//
// Placement: by default (`make bench-node`) the bench runs itself twice,
// pinned: "same CPU" (`taskset -c A`: everything on the first allowed CPU,
// the Rust processes inherit the mask) and, given a second allowed CPU B,
// "cross CPU" (`taskset -c A` with IPCALL_BENCH_PEER_CPU=B: the server's
// side of each row runs on B instead: the Rust server of the first rows,
// the Rust client of "Rust -> Node" (the Node server stays on A), the Rust
// server of "Rust -> Rust" while its Rust client stays with node, and the
// zeromq.js Reply server). IPCALL_BENCH_PLACEMENT=unpinned runs once, not
// pinned (or as placed by the caller's own taskset).
// zeromq.js: when IPCALL_BENCH_ZEROMQ names its package directory (`make
// bench-node` installs it for the bench only), a zeromq.js Request client
// against a zeromq.js Reply server in another Node process over ipc://, with
// its ratio to Node `await call()` over shm: and over unix:.
// Besides each row's ratio to Rust <-> Rust, the goals' ratios are printed
// (and recorded): `await call()` / `callSync()` per transport.
// IPCALL_BENCH_RESULTS: a directory to write node.tsv to (`make bench`).
'use strict'

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const ipcall = require('..')

const targetDir = process.env.CARGO_TARGET_DIR || path.join(__dirname, '..', '..', 'target')
const roundtripBin = path.join(targetDir, 'release', 'examples', 'roundtrip')
const peerBin = path.join(targetDir, 'release', 'examples', 'peer')
const ITERS = Number(process.env.ITERS || 20000)
// Calls made before each JavaScript row's measured ones, discarded: V8
// optimizes the hot functions only after some thousands of calls (a
// `for await` server measured from its first 20,000 requests read 0.05-0.2
// µs slower than from its next), and what a row reports is the steady state.
const WARMUP = Number(process.env.IPCALL_BENCH_WARMUP || 20000)
const SIZE = 64
/** Interleaved rounds per transport (see the header). */
const ROUNDS = Math.max(1, Number(process.env.IPCALL_BENCH_ROUNDS || 3))
const PEER_CPU = process.env.IPCALL_BENCH_PEER_CPU
/** The placement's label in the results ("same CPU", "cross CPU", "unpinned"). */
const PLACEMENT = process.env.IPCALL_BENCH_PLACEMENT || 'unpinned'

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

/** The median of a few numbers (the upper one of an even count, as `stats`). */
function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[sorted.length >> 1]
}

/**
 * Joins the rounds of one transport (each `benchKind`'s rows, same labels in
 * the same order): per row its label, the median of the rounds' medians and
 * p99s, and the median of its rounds' ratios to the round's first row.
 */
function joinRounds(rounds) {
  return rounds[0].map(([label], i) => [
    label,
    {
      median_ns: median(rounds.map((rows) => rows[i][1].median_ns)),
      p99_ns: median(rounds.map((rows) => rows[i][1].p99_ns)),
      ratio: median(rounds.map((rows) => rows[i][1].median_ns / rows[0][1].median_ns)),
      perRound: rounds.map((rows) => rows[i][1].median_ns),
    },
  ])
}

function stats(samples) {
  samples.sort((a, b) => a - b)
  return { median_ns: samples[samples.length >> 1], p99_ns: samples[Math.floor(samples.length * 0.99)] }
}

/**
 * Times sequential calls from Node: `await client.call()` or `client.callSync()`,
 * each as its user writes it (a `callSync()` is not awaited: awaiting its
 * value would add a microtask turn, ~0.1-0.25 µs here, to every sample).
 */
async function nodeCalls(client, sync) {
  const message = Buffer.alloc(SIZE, 0x5a)
  const samples = new Array(ITERS)
  if (sync) {
    for (let i = 0; i < WARMUP; i++) client.callSync(message)
    for (let i = 0; i < ITERS; i++) {
      const start = process.hrtime.bigint()
      client.callSync(message)
      samples[i] = Number(process.hrtime.bigint() - start)
    }
    return stats(samples)
  }
  for (let i = 0; i < WARMUP; i++) await client.call(message)
  for (let i = 0; i < ITERS; i++) {
    const start = process.hrtime.bigint()
    await client.call(message)
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
  // The server's warm-up: a first client's calls, discarded.
  if (WARMUP > 0) await run(roundtripBin, ['client', server.name, '--iters', String(WARMUP), '--size', String(SIZE)], true)
  rows.push(['Rust -> Node (for await server)', await run(roundtripBin, ['client', server.name, '--iters', String(ITERS), '--size', String(SIZE)], true)])
  server.close()
  await serving
  return rows
}

const ZMQ_SERVER = `
const zmq = require(process.argv[1])
async function main() {
  const socket = new zmq.Reply()
  await socket.bind(process.argv[2])
  console.log('ready')
  for await (const [message] of socket) await socket.send(message)
}
main().catch((err) => { console.error(err); process.exit(1) })
`

/** zeromq.js Request -> Reply (another Node process) over ipc://, sequential. */
async function benchZeromq(zmqPath) {
  const zmq = require(zmqPath)
  const dir = process.env.XDG_RUNTIME_DIR || os.tmpdir()
  const file = path.join(dir, `bench-zeromq-js-${process.pid}`)
  const address = `ipc://${file}`
  const child = spawn(...placed(process.execPath, ['-e', ZMQ_SERVER, zmqPath, address], true), {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  try {
    const line = await new Promise((resolve, reject) => {
      readline.createInterface({ input: child.stdout }).once('line', resolve)
      child.once('error', reject)
      child.once('exit', (code) => reject(new Error(`the zeromq.js server exited ${code}`)))
    })
    if (line.trim() !== 'ready') throw new Error(`the zeromq.js server said ${line}`)
    const socket = new zmq.Request()
    socket.connect(address)
    const message = Buffer.alloc(SIZE, 0x5a)
    const once = async () => {
      await socket.send(message)
      await socket.receive()
    }
    for (let i = 0; i < WARMUP; i++) await once()
    const samples = new Array(ITERS)
    for (let i = 0; i < ITERS; i++) {
      const start = process.hrtime.bigint()
      await once()
      samples[i] = Number(process.hrtime.bigint() - start)
    }
    socket.close()
    return stats(samples)
  } finally {
    child.kill()
    fs.rmSync(file, { force: true })
  }
}

/** The CPUs this process may run on (from `taskset -p`), in order. */
function allowedCpus() {
  try {
    const out = require('node:child_process').execFileSync('taskset', ['-c', '-p', String(process.pid)], { encoding: 'utf8' })
    const list = out.slice(out.lastIndexOf(':') + 1).trim()
    const cpus = []
    for (const part of list.split(',')) {
      const [from, to = from] = part.split('-').map(Number)
      for (let cpu = from; cpu <= to; cpu++) cpus.push(cpu)
    }
    return cpus.filter(Number.isInteger)
  } catch {
    return []
  }
}

/** Runs this bench once per placement (pinned with taskset) and joins their results. */
async function placements() {
  const cpus = allowedCpus()
  if (cpus.length === 0) {
    console.log('(taskset is not available: running once, not pinned)')
    return main()
  }
  const runs = [['same CPU', {}]]
  if (cpus.length > 1) runs.push(['cross CPU', { IPCALL_BENCH_PEER_CPU: String(cpus[1]) }])
  else console.log('(one CPU only: the cross-CPU placement is skipped)')
  const results = process.env.IPCALL_BENCH_RESULTS
  const parts = []
  for (const [label, extra] of runs) {
    const dir = results ? fs.mkdtempSync(path.join(os.tmpdir(), 'ipcall-bench-node-')) : undefined
    const env = { ...process.env, ...extra, IPCALL_BENCH_PLACEMENT: label }
    if (dir) env.IPCALL_BENCH_RESULTS = dir
    console.log(`\n=== ${label} (node on CPU ${cpus[0]}${extra.IPCALL_BENCH_PEER_CPU ? `, servers' sides on CPU ${extra.IPCALL_BENCH_PEER_CPU}` : ''})`)
    const child = spawn('taskset', ['-c', String(cpus[0]), process.execPath, __filename], { env, stdio: 'inherit' })
    const code = await new Promise((resolve, reject) => {
      child.once('error', reject)
      child.once('close', resolve)
    })
    if (code !== 0) throw new Error(`the ${label} run exited ${code}`)
    if (dir) {
      parts.push(fs.readFileSync(path.join(dir, 'node.tsv'), 'utf8'))
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
  if (results) {
    fs.mkdirSync(results, { recursive: true })
    fs.writeFileSync(path.join(results, 'node.tsv'), parts.join(''))
  }
}

async function main() {
  console.log(`ipcall round trip, ${SIZE} B request and reply, ${ITERS} sequential calls, median (p99) in µs, of ${ROUNDS} interleaved rounds`)
  if (PEER_CPU !== undefined) console.log(`servers' sides on CPU ${PEER_CPU} (IPCALL_BENCH_PEER_CPU)`)
  const us = (ns) => (ns / 1000).toFixed(1)
  const records = []
  const record = (mechanism, ns, floor, ratio) =>
    records.push(['node', PLACEMENT, mechanism, '64 B p50 µs', ns / 1000, floor, Number.isFinite(ratio) ? ratio : ''])
  const nodeAsync = {}
  const kinds = process.env.IPCALL_BENCH_KINDS ? process.env.IPCALL_BENCH_KINDS.split(',') : ['mem', 'unix', 'pipe', 'shm']
  for (const kind of kinds) {
    if (!ipcall.availableKinds().includes(kind)) {
      console.log(`\n${kind}: not available in this build, skipped`)
      continue
    }
    const rounds = []
    for (let round = 0; round < ROUNDS; round++) rounds.push(await benchKind(kind))
    const rows = joinRounds(rounds)
    const [baseLabel] = rows[0]
    console.log(`\n${kind}:`)
    for (const [label, { median_ns, p99_ns, ratio, perRound }] of rows) {
      const each = perRound.map(us).join(' ')
      console.log(`  ${label.padEnd(42)} ${us(median_ns).padStart(8)} (${us(p99_ns)})  x${ratio.toFixed(2)}  [rounds: ${each}]`)
      if (label === baseLabel) record(`${kind}: ${label}`, median_ns, '', NaN)
      else record(`${kind}: ${label}`, median_ns, `${kind}: ${baseLabel}`, ratio)
      if (label.endsWith('await call()')) nodeAsync[kind] = { median_ns, perRound }
    }
    const sync = rows.find(([label]) => label.endsWith('callSync()'))
    if (sync && nodeAsync[kind] !== undefined) {
      // The goal's ratio: `await call()` against `callSync()`, same transport
      // and placement, the median of the rounds' ratios.
      const ratio = median(nodeAsync[kind].perRound.map((ns, round) => ns / sync[1].perRound[round]))
      console.log(`  await call() / callSync(): x${ratio.toFixed(2)}`)
      record(`${kind}: Node -> Rust, await call() / callSync()`, nodeAsync[kind].median_ns, `${kind}: ${sync[0]}`, ratio)
    }
  }
  const zmqPath = process.env.IPCALL_BENCH_ZEROMQ
  if (zmqPath) {
    const label = 'zeromq.js Request -> Reply (Node process), ipc://'
    const { median_ns, p99_ns } = await benchZeromq(zmqPath)
    console.log(`\nzeromq.js ${require(path.join(zmqPath, 'package.json')).version}:`)
    console.log(`  ${label.padEnd(42)} ${us(median_ns).padStart(8)} (${us(p99_ns)})`)
    let recorded = false
    for (const kind of ['shm', 'unix']) {
      if (nodeAsync[kind] === undefined) continue
      const ratio = median_ns / nodeAsync[kind].median_ns
      console.log(`  zeromq.js / Node -> Rust await call() over ${kind}: x${ratio.toFixed(2)}`)
      // The table keeps one ratio per row: against shm: (the issue's goal), else unix:.
      if (!recorded) record(label, median_ns, `${kind}: Node -> Rust, await call()`, ratio)
      recorded = true
    }
    if (!recorded) record(label, median_ns, '', NaN)
  } else {
    console.log('\nzeromq.js: skipped (IPCALL_BENCH_ZEROMQ is not set; `make bench-node` installs it)')
  }
  const results = process.env.IPCALL_BENCH_RESULTS
  if (results) {
    fs.mkdirSync(results, { recursive: true })
    fs.writeFileSync(path.join(results, 'node.tsv'), records.map((r) => r.join('\t') + '\n').join(''))
  }
}

const pinned = process.env.IPCALL_BENCH_PLACEMENT !== undefined || process.env.IPCALL_BENCH_PEER_CPU !== undefined
;(pinned ? main() : placements()).catch((err) => {
  console.error(err)
  process.exit(1)
})
