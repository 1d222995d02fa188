// `callSync()` and `call()` without options go through raw native
// functions that find the client by a number (src/client/natives.rs); a
// small reply comes back in the shared pool ArrayBuffer that the setup
// script views as a Buffer, and `call()`'s Promise is the script's, settled
// through its `settleCall`: what that must not change —
// every reply keeps its own bytes across pools, a transferred pool is not
// written to, errors keep their codes, options still take the full path,
// and a number that names no client is refused.
'use strict'

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')
const { caught, ipcall, peerSkipReason, startRustServer } = require('./helpers.js')

/** `size` bytes that differ from call to call (`seed`). */
function message(size, seed) {
  const bytes = Buffer.alloc(size)
  for (let i = 0; i < size; i++) bytes[i] = (seed * 29 + i * 11) & 0xff
  return bytes
}

/** Runs `body(client)` against the Rust peer's echo server over `kind`, then stops it. */
async function withEchoServer(kind, body) {
  const { child, name } = await startRustServer(kind)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const client = ipcall.connect(name)
  try {
    await body(client)
  } finally {
    client.close()
    child.kill()
    await exited
  }
}

// unix: replies read by the loop; shm: also answers already there when
// the request has gone (the core's `try_call`).
for (const kind of ['unix', 'shm']) describe(`${kind}: replies of the raw call paths`, { skip: peerSkipReason() }, () => {
  test('each callSync() reply keeps its own bytes, in and out of the pool, across pools', async () => {
    await withEchoServer(kind, (client) => {
      // Around the pool's limit (2 KiB), the copy limit (4 KiB) and a pool
      // (16 KiB): enough to fill several pools.
      const sizes = [0, 1, 63, 64, 2047, 2048, 2049, 4096, 4097, 70000]
      const sent = []
      const replies = []
      for (let round = 0; round < 12; round++) {
        for (const size of sizes) {
          const bytes = message(size, sent.length)
          sent.push(bytes)
          const reply = client.callSync(bytes)
          assert.ok(Buffer.isBuffer(reply), `reply ${sent.length - 1} is a Buffer`)
          replies.push(reply)
        }
      }
      replies.forEach((reply, i) => assert.deepEqual(reply, sent[i], `reply ${i} (${sent[i].length} bytes)`))
      // Strings, typed arrays and ArrayBuffers are sent as before.
      assert.equal(client.callSync('text').toString(), 'text')
      assert.deepEqual([...client.callSync(new Uint16Array([0x0102]))], [...Buffer.from(new Uint16Array([0x0102]).buffer)])
      assert.deepEqual([...client.callSync(new Uint8Array([7, 8]).buffer)], [7, 8])
    })
  })

  test('a pool transferred away by its user is not written to', async () => {
    await withEchoServer(kind, (client) => {
      const first = client.callSync('first')
      assert.ok(first.buffer.byteLength > first.length, 'a small reply is a view of the pool')
      const pool = first.buffer
      const offset = first.byteOffset // a view of a detached buffer reads 0
      const moved = structuredClone(pool, { transfer: [pool] })
      assert.equal(pool.byteLength, 0, 'the pool was detached')
      const next = client.callSync('next')
      assert.equal(next.toString(), 'next')
      assert.notEqual(next.buffer, pool)
      assert.equal(Buffer.from(moved, offset, 5).toString(), 'first')
    })
  })

  test('await call() replies match their calls, one at a time and many in flight, in and out of the pool', async () => {
    await withEchoServer(kind, async (client) => {
      const sizes = [0, 1, 63, 64, 2047, 2048, 2049, 4096, 4097, 70000]
      const sent = []
      const replies = []
      // One at a time: each settles a number that the next call reuses.
      for (let round = 0; round < 6; round++) {
        for (const size of sizes) {
          const bytes = message(size, sent.length)
          sent.push(bytes)
          const reply = await client.call(bytes)
          assert.ok(Buffer.isBuffer(reply))
          replies.push(reply)
        }
      }
      // Many at once, some failing, settled in whatever order they come.
      const batch = Array.from({ length: 200 }, (_, i) => message((i * 97) % 5000, sent.length + i))
      const outcomes = await Promise.allSettled(
        batch.map((bytes, i) => client.call(i % 10 === 3 ? Buffer.concat([Buffer.from('fail:'), bytes]) : bytes)),
      )
      outcomes.forEach((outcome, i) => {
        if (i % 10 === 3) {
          assert.equal(outcome.status, 'rejected', `call ${i}`)
          assert.equal(outcome.reason.code, 'REMOTE')
          assert.deepEqual(outcome.reason.payload, batch[i])
        } else {
          assert.deepEqual(outcome.value, batch[i], `call ${i}`)
        }
      })
      // The first replies kept their bytes through every later pool.
      replies.forEach((reply, i) => assert.deepEqual(reply, sent[i], `reply ${i} (${sent[i].length} bytes)`))
    })
  })

  test('errors keep their codes on the raw paths', async () => {
    await withEchoServer(kind, async (client) => {
      const remote = await caught(() => client.callSync('fail:nope'))
      assert.ok(remote instanceof ipcall.IpcallError)
      assert.equal(remote.code, 'REMOTE')
      assert.equal(remote.payload.toString(), 'nope')
      assert.equal((await caught(() => client.call('fail:again'))).code, 'REMOTE')
      assert.equal((await caught(() => client.callSync('noreply'))).code, 'NO_REPLY')
      for (const bad of [() => client.callSync(42), () => client.call({})]) {
        assert.throws(bad, (err) => err instanceof TypeError && !(err instanceof ipcall.IpcallError))
      }
      client.close()
      const closed = await caught(() => client.callSync('after close'))
      assert.equal(closed.code, 'CLOSED')
      assert.match(closed.message, /this client is closed/)
      assert.equal((await caught(() => client.call('after close'))).code, 'CLOSED')
    })
  })

  test('options still take the full path (a timeout, a signal)', async () => {
    await withEchoServer(kind, async (client) => {
      assert.equal(client.callSync('with options', { timeout: 60000 }).toString(), 'with options')
      assert.equal((await client.call('with options', { timeout: 60000 })).toString(), 'with options')
      const aborted = await caught(() => client.call('x', { signal: AbortSignal.abort() }))
      assert.equal(aborted.name, 'AbortError')
      assert.equal(client.callSync('x', null).toString(), 'x')
    })
  })

  test('the raw paths refuse what is not a client, and a server\'s number never names a client', () => {
    const { callSync, call } = ipcall.Client.prototype
    const server = ipcall.Server.bindUnique('mem')
    const client = ipcall.connect(server.name)
    for (const method of [callSync, call]) {
      assert.throws(() => method.call({}, 'x'), TypeError)
      assert.throws(() => method.call({ __ipcallClientId: () => 1e9 }, 'x'), /not a Client/)
      assert.throws(() => method.call({ __ipcallClientId: () => -1 }, 'x'), /not a Client/)
      assert.throws(() => method.call(server, 'x'), TypeError)
    }
    assert.throws(() => ipcall.Server.prototype.recv.call(client), TypeError)
    client.close()
    server.close()
  })
})
