// Cancellation that reaches the server: a caller that gives up — its
// `AbortSignal` passed to `call` aborts, its timeout passes, its process is
// killed mid-call — aborts the server's `req.signal` (and sets
// `req.cancelled`), over every local transport; `call` rejects with an
// AbortError; answering a cancelled request is harmless; a caller that
// waits is not cancelled.
'use strict'

const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { describe, test } = require('node:test')
const { crossProcessKinds, ipcall, kindsWithAvailability } = require('./helpers.js')

// How long a test waits for anything before it fails.
const BOUND_MS = 30000

/** Resolves when `signal` aborts; rejects after BOUND_MS. */
function aborted(signal) {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('req.signal never aborted')), BOUND_MS)
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer)
        resolve()
      },
      { once: true },
    )
  })
}

/** Checks the server's side of a given-up call, then answers it (harmless). */
async function expectCancelled(req) {
  const signal = req.signal
  assert.ok(signal instanceof AbortSignal)
  assert.equal(req.signal, signal, 'the same signal on every read')
  await aborted(signal)
  assert.equal(signal.reason.name, 'AbortError')
  assert.equal(req.cancelled, true)
  req.reply('late')
  assert.equal(req.cancelled, true, 'still cancelled after the answer')
}

/** Serves one live call: it is not cancelled. */
async function serveLive(server) {
  const req = await server.recv({ timeout: BOUND_MS })
  assert.equal(req.cancelled, false)
  assert.equal(req.signal.aborted, false)
  req.reply('next')
}

for (const [kind, skip] of kindsWithAvailability()) {
  describe(`${kind}:`, { skip }, () => {
    test("an aborted call rejects with an AbortError and aborts the server's req.signal", async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const controller = new AbortController()
      const call = client.call('slow', { signal: controller.signal })
      const req = await server.recv({ timeout: BOUND_MS })
      // Read before the abort: the signal aborts later, from the cancel.
      assert.equal(req.signal.aborted, false)
      controller.abort()
      await assert.rejects(call, (err) => {
        assert.equal(err.name, 'AbortError')
        assert.equal(err.code, 'ABORT_ERR')
        assert.equal(err.cause, controller.signal.reason)
        return true
      })
      await expectCancelled(req)
      const next = client.call('x')
      await serveLive(server)
      assert.equal((await next).toString(), 'next')
      client.close()
      server.close()
    })

    test("a timed-out call aborts the server's req.signal", async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const call = client.call('slow', { timeout: 20 })
      const req = await server.recv({ timeout: BOUND_MS })
      await assert.rejects(call, { code: 'TIMEOUT' })
      await expectCancelled(req)
      const next = client.call('x')
      await serveLive(server)
      assert.equal((await next).toString(), 'next')
      client.close()
      server.close()
    })

    test('a signal aborted before the call rejects at once and sends nothing', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const reason = new Error('changed my mind')
      await assert.rejects(client.call('never', { signal: AbortSignal.abort(reason) }), (err) => {
        assert.equal(err.name, 'AbortError')
        assert.equal(err.cause, reason)
        return true
      })
      // The next request is the first the server sees.
      const next = client.call('x')
      const req = await server.recv({ timeout: BOUND_MS })
      assert.equal(req.data.toString(), 'x')
      req.reply('next')
      assert.equal((await next).toString(), 'next')
      client.close()
      server.close()
    })

    test('an answered call is not cancelled by a later abort', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const controller = new AbortController()
      const call = client.call('x', { signal: controller.signal })
      const req = await server.recv({ timeout: BOUND_MS })
      const signal = req.signal
      req.reply('y')
      assert.equal((await call).toString(), 'y')
      controller.abort()
      assert.equal(signal.aborted, false)
      assert.equal(req.cancelled, false)
      client.close()
      server.close()
    })
  })
}

for (const [kind, skip] of crossProcessKinds()) {
  describe(`${kind}: a caller killed mid-call`, { skip }, () => {
    test("its connection ends: the server's req.signal aborts", async () => {
      const server = ipcall.Server.bindUnique(kind)
      // A Node caller in a child process; it sends no cancel, it just dies.
      const script = `const ipcall = require(${JSON.stringify(require.resolve('ipcall'))})
        const client = ipcall.connect(${JSON.stringify(server.name)})
        client.call('slow', { timeout: ${BOUND_MS * 2} }).catch(() => {})`
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'inherit'] })
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try {
        const req = await server.recv({ timeout: BOUND_MS })
        assert.equal(req.signal.aborted, false, 'the caller still waits')
        child.kill('SIGKILL')
        await exited
        await expectCancelled(req)
      } finally {
        child.kill('SIGKILL')
        server.close()
      }
    })
  })
}

test('options.signal must be an AbortSignal', async () => {
  const server = ipcall.Server.bindUnique('mem')
  const client = ipcall.connect(server.name)
  assert.throws(() => client.call('x', { signal: {} }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => client.call('x', { signal: 42 }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  // Nothing was sent: the next request is the first the server sees.
  const next = client.call('first')
  const req = await server.recv({ timeout: BOUND_MS })
  assert.equal(req.data.toString(), 'first')
  req.reply('ok')
  assert.equal((await next).toString(), 'ok')
  client.close()
  server.close()
})
