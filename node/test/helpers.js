// Shared by the node --test suite: which transports exist, the Rust peer, and
// small waiting helpers (liveness only: nothing here measures time).
'use strict'

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')
const ipcall = require('ipcall')

const repoRoot = path.join(__dirname, '..', '..')
const targetDir = process.env.CARGO_TARGET_DIR || path.join(repoRoot, 'target')
const peerPath = path.join(targetDir, 'debug', 'examples', 'peer')

/** Every transport kind the core knows, in the core's order. */
const ALL_KINDS = ['mem', 'unix', 'pipe', 'shm']

/**
 * [kind, skipReason] for every kind: skipReason is false when the kind binds
 * in this build, otherwise why it is skipped (printed by the test runner), so
 * a transport that lands in the core is picked up with no change here.
 */
function kindsWithAvailability() {
  const available = new Set(ipcall.availableKinds())
  return ALL_KINDS.map((kind) => [
    kind,
    available.has(kind) ? false : `${kind}: is not available in this build of ipcall yet (bindUnique answers INVALID_NAME)`,
  ])
}

/** Kinds that reach another process (all but mem:), with skip reasons as above. */
function crossProcessKinds() {
  return kindsWithAvailability().filter(([kind]) => kind !== 'mem')
}

function peerSkipReason() {
  return fs.existsSync(peerPath) ? false : `the Rust peer is not built (${peerPath}): run cargo build --example peer`
}

/** Starts `peer serve --unique KIND` and resolves with { child, name } once it printed its name. */
function startRustServer(kind, extraArgs = []) {
  const child = spawn(peerPath, ['serve', '--unique', kind, ...extraArgs], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout })
    lines.once('line', (name) => resolve({ child, name: name.trim() }))
    child.once('error', reject)
    child.once('exit', (code, signal) => reject(new Error(`peer serve exited early (code ${code}, signal ${signal})`)))
  })
}

/** Runs a child process to its end: resolves { code, signal, stdout, stderr }. */
function runToEnd(command, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

/** Resolves after a setInterval has fired `count` times: proof the event loop turns. */
function intervalTicks(count) {
  return new Promise((resolve) => {
    let ticks = 0
    const timer = setInterval(() => {
      ticks += 1
      if (ticks === count) {
        clearInterval(timer)
        resolve(ticks)
      }
    }, 1)
  })
}

/** Runs `fn` and resolves with what it threw or rejected with (fails if it did not). */
async function caught(fn) {
  try {
    await fn()
  } catch (err) {
    return err
  }
  throw new Error('expected an error, none was thrown')
}

module.exports = {
  ALL_KINDS,
  caught,
  crossProcessKinds,
  intervalTicks,
  ipcall,
  kindsWithAvailability,
  peerPath,
  peerSkipReason,
  repoRoot,
  runToEnd,
  startRustServer,
}
