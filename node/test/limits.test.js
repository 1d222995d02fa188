// The server limits as bind options: a client over maxConnections is refused
// at connect with IO, a client that never reads is dropped alone once its
// replies pass maxQueuedReplyBytes, and invalid values are TypeErrors. (The
// timeouts' effects are tested in rust/ipcall/tests/slow_peer.rs and
// hostile.rs; here that Node passes them through.)
'use strict'

const assert = require('node:assert/strict')
const net = require('node:net')
const { describe, test } = require('node:test')
const { caught, crossProcessKinds, ipcall } = require('./helpers.js')

/** Every wait here is bounded by this (a loaded 2-CPU machine). */
const BOUND_MS = 60000

const unixSkip = ipcall.availableKinds().includes('unix')
  ? false
  : 'needs unix:, which is not available in this build of ipcall yet'

/** Answers every request with `answer(data)` until the server is closed; resolves with the count. */
async function serve(server, answer = (data) => data) {
  let answered = 0
  for await (const req of server) {
    try {
      req.reply(answer(req.data))
    } catch {
      // The client may have been dropped: that is what some tests check.
    }
    answered++
  }
  return answered
}

/** Resolves after `ms` milliseconds (only for retry pacing, never a timed assertion). */
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

for (const [kind, skip] of crossProcessKinds()) {
  describe(`${kind}:`, { skip }, () => {
    test('a client over maxConnections is refused at connect with IO', async () => {
      const server = ipcall.Server.bindUnique(kind, { maxConnections: 1 })
      const serving = serve(server)
      const first = await ipcall.connectAsync(server.name, { timeout: BOUND_MS })
      assert.equal((await first.call('one', { timeout: BOUND_MS })).toString(), 'one')
      const err = await caught(() => ipcall.connectAsync(server.name))
      assert.ok(err instanceof ipcall.IpcallError, `${err}`)
      assert.equal(err.code, 'IO', err.message)
      assert.match(err.message, /maximum number of connections/)
      // Once the server has seen the first one leave, a new client gets in.
      first.close()
      let second = null
      for (let tries = 0; second === null; tries++) {
        assert.ok(tries < BOUND_MS / 50, 'no slot freed after a client left')
        try {
          second = await ipcall.connectAsync(server.name)
        } catch (e) {
          assert.equal(e.code, 'IO', e.message)
          await pause(50)
        }
      }
      assert.equal((await second.call('two', { timeout: BOUND_MS })).toString(), 'two')
      second.close()
      server.close()
      await serving
    })
  })
}

/** A client hello of protocol version 1 (docs/PROTOCOL.md §2). */
function hello() {
  const bytes = Buffer.alloc(16)
  bytes.write('IPCL', 0, 'latin1')
  bytes.writeUInt16LE(1, 4)
  bytes.writeUInt32LE(64 << 20, 8)
  return bytes
}

/** A request frame (docs/PROTOCOL.md §3) carrying `payload`. */
function request(id, payload) {
  const header = Buffer.alloc(16)
  header.writeUInt32LE(payload.length, 0)
  header[4] = 1
  header.writeBigUInt64LE(BigInt(id), 8)
  return Buffer.concat([header, payload])
}

describe('unix: reply budget', { skip: unixSkip }, () => {
  test('a client that never reads is dropped alone once its replies pass maxQueuedReplyBytes', async () => {
    const server = ipcall.Server.bindUnique('unix', { maxQueuedReplyBytes: 2 << 20 })
    const REQUESTS = 32
    let replied = 0
    let allReplied
    const repliedAll = new Promise((resolve) => (allReplied = resolve))
    const serving = serve(server, (data) => {
      if (data[0] === 2 && ++replied === REQUESTS) allReplied()
      return Buffer.concat(Array(1024).fill(data))
    })
    // The bad client speaks the protocol over a raw socket and reads nothing
    // while its 32 answers of 1 MiB are made (no 'data' listener: the socket
    // buffers at most its high-water mark, then leaves the rest in the kernel).
    const bad = net.createConnection(server.name.slice('unix:'.length))
    await new Promise((resolve, reject) => bad.once('connect', resolve).once('error', reject))
    bad.pause()
    bad.write(hello())
    for (let id = 1; id <= REQUESTS; id++) bad.write(request(id, Buffer.alloc(1024, 2)))
    await repliedAll
    // Meanwhile every other client is served.
    const good = await ipcall.connectAsync(server.name, { timeout: BOUND_MS })
    assert.equal((await good.call('ok', { timeout: BOUND_MS })).length, 2 * 1024)
    // Now read: the server must have closed the bad connection before all
    // its answers arrived (32 MiB queued far past the 2 MiB budget).
    let received = 0
    const full = 16 + REQUESTS * (16 + (1 << 20))
    const ended = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`neither dropped nor answered within ${BOUND_MS} ms`)), BOUND_MS)
      bad.on('data', (chunk) => {
        received += chunk.length
        if (received >= full) {
          clearTimeout(timer)
          resolve(false)
        }
      })
      bad.once('close', () => {
        clearTimeout(timer)
        resolve(true)
      })
      bad.once('error', () => {}) // a reset is a close too
      bad.resume()
    })
    bad.destroy()
    assert.ok(ended && received < full, `the client over its reply budget was never dropped (${received} of ${full} bytes)`)
    assert.equal((await good.call('still', { timeout: BOUND_MS })).length, 5 * 1024)
    good.close()
    server.close()
    await serving
  })
})

describe('invalid limits', () => {
  test('are TypeErrors (ERR_INVALID_ARG_TYPE) naming the option', async () => {
    const bad = [
      { maxQueuedReplyBytes: 0 }, { maxQueuedReplyBytes: -1 }, { maxQueuedReplyBytes: 1.5 },
      { maxConnections: 0 }, { maxConnections: -3 }, { maxConnections: 2 ** 40 },
      { replyTimeout: -1 }, { replyTimeout: NaN }, { replyTimeout: Infinity },
      { frameTimeout: -0.5 }, { frameTimeout: NaN },
    ]
    for (const options of bad) {
      for (const bind of [() => ipcall.Server.bindUnique('mem', options), () => ipcall.Server.bind('mem:limits-invalid', options)]) {
        const err = await caught(bind)
        assert.equal(err.name, 'TypeError', `${JSON.stringify(options)}: ${err.message}`)
        assert.equal(err.code, 'ERR_INVALID_ARG_TYPE')
        assert.match(err.message, new RegExp(Object.keys(options)[0]))
      }
    }
  })

  test('valid limits pass through bind and bindUnique', async () => {
    const limits = { maxQueuedReplyBytes: 1 << 20, replyTimeout: 2500, maxConnections: 8, frameTimeout: 500 }
    const first = ipcall.Server.bindUnique('mem', limits)
    first.close()
    const server = ipcall.Server.bind(`mem:limits-valid-${process.pid}`, limits)
    const serving = serve(server)
    const client = ipcall.connect(server.name)
    assert.equal((await client.call('limits')).toString(), 'limits')
    client.close()
    server.close()
    await serving
  })
})
