// The core's events on diagnostics_channel (README "Observability"): what a
// subscriber sees of real connections, accepts and drops, and what it does
// not see (before enableEvents(), after unsubscribe or disableEvents(), past
// the queue's bound). The tests run in order: the first one needs events
// still off in this process.
'use strict'

const assert = require('node:assert/strict')
const dc = require('node:diagnostics_channel')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { describe, test } = require('node:test')
const { caught, ipcall, runToEnd } = require('./helpers.js')

/** Bound on every wait for an event (liveness, not a timing). */
const BOUND_MS = 60000

const CHANNELS = [
  'ipcall:connect',
  'ipcall:bind',
  'ipcall:accept',
  'ipcall:refuse',
  'ipcall:drop',
  'ipcall:protocol-error',
  'ipcall:nats',
]

const unixSkip = ipcall.availableKinds().includes('unix')
  ? false
  : 'needs unix:, which is not available in this build of ipcall yet'

/**
 * Subscribes to `channels` and keeps every message `keep(message)` accepts
 * as { channel, ...message }. `waitFor(channel, match)` resolves with the
 * first kept message of `channel` that `match` accepts (waiting up to
 * BOUND_MS: the wait's timer also keeps the process alive, which ipcall's
 * events do not); `stop()` unsubscribes.
 */
function record(channels, keep) {
  const seen = []
  let wake = () => {}
  const listeners = channels.map((channel) => {
    const listener = (message) => {
      if (!keep(message)) return
      seen.push({ channel, ...message })
      wake()
    }
    dc.subscribe(channel, listener)
    return [channel, listener]
  })
  return {
    seen,
    of(channel, match = () => true) {
      return seen.filter((m) => m.channel === channel && match(m))
    },
    waitFor(channel, match = () => true) {
      return this.waitUntil(() => this.of(channel, match)[0], `a ${channel} message`)
    },
    /** Resolves with `found()` once it is truthy. */
    waitUntil(found, what) {
      const now = found()
      if (now) return Promise.resolve(now)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          wake = () => {}
          reject(new Error(`no ${what} within ${BOUND_MS} ms; seen: ${JSON.stringify(seen, null, 1)}`))
        }, BOUND_MS)
        wake = () => {
          const result = found()
          if (result) {
            clearTimeout(timer)
            wake = () => {}
            resolve(result)
          }
        }
      })
    },
    stop() {
      for (const [channel, listener] of listeners) dc.unsubscribe(channel, listener)
    },
  }
}

/** Answers every request with its own bytes until the server is closed. */
async function echo(server) {
  for await (const req of server) req.reply(req.data)
}

/** Connects to `name` and closes at once (over mem: both edges happen in the calls). */
function connectAndLeave(name) {
  ipcall.connect(name).close()
}

describe('ipcall events on diagnostics_channel', () => {
  test('nothing is published before enableEvents()', async () => {
    const server = ipcall.Server.bindUnique('mem')
    const seen = record(CHANNELS, (m) => m.name === server.name)
    try {
      connectAndLeave(server.name)
      ipcall.enableEvents()
      ipcall.enableEvents() // harmless twice
      connectAndLeave(server.name)
      const accepted = await seen.waitFor('ipcall:accept')
      await seen.waitFor('ipcall:drop', (m) => m.conn === accepted.conn)
      // mem: emits both edges inside connect() and close(): the first
      // connection's came before events were on, and were never made.
      assert.equal(accepted.conn, 1, JSON.stringify(seen.seen))
      assert.deepEqual(seen.of('ipcall:accept').map((m) => m.conn), [1])
      assert.deepEqual(seen.of('ipcall:bind'), [])
    } finally {
      seen.stop()
      server.close()
    }
  })

  test('past 1,024 events waiting for this thread, events are dropped and counted', async () => {
    const server = ipcall.Server.bindUnique('mem')
    const seen = record(CHANNELS, (m) => m.name === server.name)
    try {
      await seen.waitFor('ipcall:bind')
      const droppedBefore = ipcall.droppedEvents()
      // This thread is busy, so none is published meanwhile: 600 connections
      // make 1,800 events (connected, accepted, dropped), all over mem:,
      // all emitted by this thread, so nothing else competes for the queue.
      for (let i = 0; i < 600; i++) connectAndLeave(server.name)
      assert.equal(ipcall.droppedEvents() - droppedBefore, 1800 - 1024)
      await seen.waitUntil(() => seen.seen.length >= 1 + 1024, '1,024 queued events')
      // The queue kept the oldest: the first 1,024 in the order emitted.
      const conns = seen.of('ipcall:accept').map((m) => m.conn)
      assert.deepEqual(conns, [...Array(conns.length).keys()])
      assert.equal(seen.seen.length, 1 + 1024)
      // Emitted per connection: accepted, connected, dropped; 1,024 = 341 * 3 + 1.
      assert.equal(conns.length, 342)
    } finally {
      seen.stop()
      server.close()
    }
  })

  test('a listener unsubscribed sees nothing more; the others still do', async () => {
    const server = ipcall.Server.bindUnique('mem')
    const mine = (m) => m.name === server.name
    const leaving = record(['ipcall:accept', 'ipcall:drop'], mine)
    const staying = record(['ipcall:accept', 'ipcall:drop'], mine)
    try {
      connectAndLeave(server.name)
      await leaving.waitFor('ipcall:drop', (m) => m.conn === 0)
      leaving.stop()
      connectAndLeave(server.name)
      // The staying listener got the second connection's drop: publishing
      // reaches every listener subscribed then, at once.
      await staying.waitFor('ipcall:drop', (m) => m.conn === 1)
      assert.deepEqual(leaving.seen.map((m) => [m.channel, m.conn]), [['ipcall:accept', 0], ['ipcall:drop', 0]])
      assert.deepEqual(staying.seen.map((m) => m.conn), [0, 0, 1, 1])
    } finally {
      leaving.stop()
      staying.stop()
      server.close()
    }
  })

  test('disableEvents() stops publishing; enableEvents() starts again', async () => {
    const server = ipcall.Server.bindUnique('mem')
    const seen = record(['ipcall:accept'], (m) => m.name === server.name)
    try {
      ipcall.disableEvents()
      ipcall.disableEvents() // harmless twice
      connectAndLeave(server.name)
      ipcall.enableEvents()
      connectAndLeave(server.name)
      await seen.waitFor('ipcall:accept', (m) => m.conn === 1)
      assert.deepEqual(seen.seen.map((m) => m.conn), [1])
    } finally {
      ipcall.enableEvents()
      seen.stop()
      server.close()
    }
  })

  test('a client process that connects, calls and leaves: accept and drop over unix:, with its pid', { skip: unixSkip }, async () => {
    let name
    const seen = record(CHANNELS, (m) => m.name === name)
    const server = ipcall.Server.bindUnique('unix')
    name = server.name
    const serving = echo(server)
    try {
      const bound = await seen.waitFor('ipcall:bind')
      assert.deepEqual(bound, { channel: 'ipcall:bind', level: 'debug', message: 'server bound', name, transport: 'unix', ok: true })

      const child = `const ipcall = require(${JSON.stringify(path.join(__dirname, '..'))})
        const client = ipcall.connect(${JSON.stringify(name)})
        if (client.callSync(Buffer.from('hi')).toString() !== 'hi') process.exit(3)
        client.close()
        console.log(process.pid)`
      const run = await runToEnd(process.execPath, ['-e', child])
      assert.equal(run.code, 0, run.stderr)
      const childPid = Number(run.stdout.trim())

      const accepted = await seen.waitFor('ipcall:accept', (m) => m.pid === childPid)
      assert.equal(accepted.level, 'debug')
      assert.equal(accepted.message, 'connection accepted')
      assert.equal(accepted.transport, 'unix')
      assert.equal(accepted.uid, process.getuid())
      assert.equal(typeof accepted.conn, 'number')
      const dropped = await seen.waitFor('ipcall:drop', (m) => m.conn === accepted.conn)
      assert.deepEqual(dropped, {
        channel: 'ipcall:drop',
        level: 'debug',
        message: 'connection dropped',
        name,
        transport: 'unix',
        conn: accepted.conn,
        pid: childPid,
        uid: process.getuid(),
        reason: 'client_left',
      })

      // This process's own connect: its connect event, and an accept with our pid.
      const client = ipcall.connect(name)
      const connected = await seen.waitFor('ipcall:connect')
      assert.deepEqual(connected, { channel: 'ipcall:connect', level: 'debug', message: 'connected', name, transport: 'unix', ok: true })
      const ours = await seen.waitFor('ipcall:accept', (m) => m.pid === process.pid)
      client.close()
      await seen.waitFor('ipcall:drop', (m) => m.conn === ours.conn)
      // Nothing on the channels for misbehaving peers.
      assert.deepEqual(seen.of('ipcall:protocol-error'), [])
      assert.deepEqual(seen.of('ipcall:refuse'), [])
    } finally {
      seen.stop()
      server.close()
      await serving
    }
  })

  test('garbage from a raw socket is a protocol_violation drop (warn)', { skip: unixSkip }, async () => {
    const server = ipcall.Server.bindUnique('unix')
    const seen = record(['ipcall:accept', 'ipcall:drop'], (m) => m.name === server.name)
    const serving = echo(server)
    try {
      const raw = net.createConnection(server.name.slice('unix:'.length))
      await new Promise((resolve, reject) => raw.once('connect', resolve).once('error', reject))
      const closed = new Promise((resolve) => raw.once('close', resolve))
      raw.on('data', () => {})
      raw.on('error', () => {}) // a reset is as good as an end here
      raw.end(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
      await closed
      const dropped = await seen.waitFor('ipcall:drop')
      assert.equal(dropped.level, 'warn')
      assert.equal(dropped.reason, 'protocol_violation')
      assert.match(dropped.violation, /not an ipcall peer/)
      assert.equal(dropped.pid, process.pid)
      assert.equal(dropped.transport, 'unix')
      // The server accepted the socket (it speaks first), then dropped it.
      const accepted = await seen.waitFor('ipcall:accept')
      assert.equal(accepted.conn, dropped.conn)
      assert.equal(seen.of('ipcall:drop').length, 1)
    } finally {
      seen.stop()
      server.close()
      await serving
    }
  })

  test('a client over its reply budget is a slow-peer drop: over_reply_budget (warn)', { skip: unixSkip }, async () => {
    const server = ipcall.Server.bindUnique('unix', { maxQueuedReplyBytes: 2 << 20 })
    const seen = record(['ipcall:drop'], (m) => m.name === server.name)
    const serving = (async () => {
      for await (const req of server) {
        try {
          req.reply(Buffer.alloc(1 << 20, 7))
        } catch {
          // The connection may be gone already: that is the point.
        }
      }
    })()
    try {
      // A raw client speaks the protocol, asks for 16 answers of 1 MiB and
      // reads none of them.
      const raw = net.createConnection(server.name.slice('unix:'.length))
      await new Promise((resolve, reject) => raw.once('connect', resolve).once('error', reject))
      raw.pause()
      raw.on('error', () => {})
      const hello = Buffer.alloc(16)
      hello.write('IPCL', 0, 'latin1')
      hello.writeUInt16LE(1, 4)
      hello.writeUInt32LE(64 << 20, 8)
      raw.write(hello)
      for (let id = 1; id <= 16; id++) {
        const header = Buffer.alloc(16)
        header.writeUInt32LE(1, 0)
        header[4] = 1
        header.writeBigUInt64LE(BigInt(id), 8)
        raw.write(Buffer.concat([header, Buffer.from([id])]))
      }
      const dropped = await seen.waitFor('ipcall:drop')
      assert.equal(dropped.reason, 'over_reply_budget', JSON.stringify(dropped))
      assert.equal(dropped.level, 'warn')
      assert.equal(dropped.pid, process.pid)
      raw.destroy()
    } finally {
      seen.stop()
      server.close()
      await serving
    }
  })

  test('a worker thread that enabled events gets every event of the process; one that ended is let go', async () => {
    const { Worker } = require('node:worker_threads')
    const server = ipcall.Server.bindUnique('mem')
    const seen = record(['ipcall:accept'], (m) => m.name === server.name)
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads')
      const dc = require('node:diagnostics_channel')
      const ipcall = require(${JSON.stringify(path.join(__dirname, '..'))})
      dc.subscribe('ipcall:accept', (m) => { if (m.name === workerData) parentPort.postMessage(m) })
      ipcall.enableEvents()
      // ipcall's queue keeps no thread alive: listening does, until terminate().
      parentPort.on('message', () => {})
      parentPort.postMessage('ready')`,
      { eval: true, workerData: server.name },
    )
    try {
      const messages = []
      let wake = () => {}
      worker.on('message', (m) => {
        messages.push(m)
        wake()
      })
      const until = (found) =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`worker: ${JSON.stringify(messages)}`)), BOUND_MS)
          wake = () => found() && (clearTimeout(timer), resolve())
          wake()
        })
      await until(() => messages.includes('ready'))
      connectAndLeave(server.name)
      await until(() => messages.some((m) => m.conn === 0))
      await seen.waitFor('ipcall:accept', (m) => m.conn === 0)
      await worker.terminate()
      // Its queue is gone: the next event drops it, this thread still gets it.
      connectAndLeave(server.name)
      await seen.waitFor('ipcall:accept', (m) => m.conn === 1)
      assert.equal(messages.filter((m) => m !== 'ready').length, 1)
    } finally {
      await worker.terminate()
      seen.stop()
      server.close()
    }
  })

  test('a failed connect is an ipcall:connect message with ok: false and the error code', async () => {
    const name = `unix:${path.join(os.tmpdir(), `ipcall-events-nobody-${process.pid}`)}`
    assert.equal(fs.existsSync(name.slice('unix:'.length)), false)
    const seen = record(['ipcall:connect'], (m) => m.name === name)
    try {
      const err = await caught(() => ipcall.connect(name))
      assert.equal(err.code, 'NOT_FOUND')
      const failed = await seen.waitFor('ipcall:connect')
      assert.equal(failed.ok, false)
      assert.equal(failed.code, 'NOT_FOUND')
      assert.equal(failed.message, 'connect failed')
      assert.equal(failed.transport, 'unix')
      assert.ok(failed.error.includes(name), failed.error)
    } finally {
      seen.stop()
    }
  })
})
