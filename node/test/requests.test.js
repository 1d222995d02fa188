// Received requests are JavaScript objects over a slot of a native table,
// their small bytes in a shared pool ArrayBuffer (src/requests.rs): what
// that must not change — every request keeps its own bytes across pools,
// a stale object never reaches a reused slot, a transferred pool is not
// written to, a request dropped unanswered still ends its call.
'use strict'

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')
const { ipcall, runToEnd } = require('./helpers.js')

/** `size` bytes that differ from call to call (`seed`). */
function message(size, seed) {
  const bytes = Buffer.alloc(size)
  for (let i = 0; i < size; i++) bytes[i] = (seed * 31 + i * 7) & 0xff
  return bytes
}

for (const kind of ['mem', 'unix']) {
  describe(`${kind}: requests`, () => {
    test('each keeps its own bytes, in and out of the pool, read before and after later requests and answers', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      // Around the pool's limit (2 KiB), the copy limit (4 KiB) and a pool
      // (16 KiB): enough to fill several pools.
      const sizes = [0, 1, 63, 64, 2047, 2048, 2049, 4096, 4097, 70000]
      const sent = []
      for (let round = 0; round < 12; round++) for (const size of sizes) sent.push(message(size, sent.length))
      const calls = sent.map((bytes) => client.call(bytes))
      const held = []
      for (let i = 0; i < sent.length; i++) {
        const req = await server.recv()
        // Every other one is read at once, the rest only after all arrived.
        if (i % 2 === 0) assert.deepEqual(req.data, sent[i])
        held.push(req)
      }
      for (let i = held.length - 1; i >= 0; i--) {
        held[i].reply(held[i].data)
        assert.deepEqual(held[i].data, sent[i], `request ${i} (${sent[i].length} bytes) after the answers`)
      }
      const replies = await Promise.all(calls)
      replies.forEach((reply, i) => assert.deepEqual(reply, sent[i]))
      client.close()
      server.close()
    })

    test('an answered request cannot answer the request that reuses its slot', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const first = client.call('first')
      const old = await server.recv()
      old.reply('one')
      assert.equal((await first).toString(), 'one')
      const second = client.call('second')
      const req = await server.recv()
      assert.throws(() => old.reply('stale'), (err) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE')
      old.close() // harmless: it was answered
      assert.equal(req.answered, false)
      req.reply('two')
      assert.equal((await second).toString(), 'two')
      client.close()
      server.close()
    })

    test('a request whose pool was transferred away keeps its bytes; later requests get a new pool', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const first = client.call(message(100, 1))
      const req = await server.recv()
      const offset = req.data.byteOffset
      const moved = structuredClone(req.data.buffer, { transfer: [req.data.buffer] })
      assert.equal(req.data.length, 0) // detached with its pool
      assert.deepEqual(Buffer.from(moved, offset, 100), message(100, 1))
      req.reply('ok')
      await first
      for (let i = 0; i < 20; i++) {
        const call = client.call(message(300, i))
        const next = await server.recv()
        assert.deepEqual(next.data, message(300, i))
        next.reply(next.data)
        assert.deepEqual(await call, message(300, i))
      }
      // The transferred memory was not written to by the later requests.
      assert.deepEqual(Buffer.from(moved, offset, 100), message(100, 1))
      assert.ok(Buffer.from(moved, offset + 100).every((byte) => byte === 0))
      client.close()
      server.close()
    })
  })
}

test('a request a for-await loop drops unanswered fails its call with NO_REPLY once collected', async () => {
  // In a child with --expose-gc, so collection can be forced. The loop
  // takes requests on its fast path and never answers the second one.
  const script = `
    const ipcall = require(${JSON.stringify(require.resolve('ipcall'))})
    const server = ipcall.Server.bindUnique('mem')
    const client = ipcall.connect(server.name)
    const results = []
    ;(async () => {
      let n = 0
      for await (const req of server) {
        if (n++ !== 1) req.reply(req.data)
        if (n === 3) break
      }
    })()
    ;(async () => {
      for (const text of ['a', 'b', 'c']) {
        client.call(text).then((r) => results.push(r.toString()), (err) => results.push(err.code))
      }
      for (let i = 0; i < 1000 && results.length < 3; i++) {
        globalThis.gc()
        await new Promise((resolve) => setImmediate(resolve))
      }
      console.log(results.sort().join(','))
      client.close()
      server.close()
    })()`
  const result = await runToEnd(process.execPath, ['--expose-gc', '-e', script])
  assert.equal(result.stderr, '')
  assert.equal(result.stdout.trim(), 'NO_REPLY,a,c')
})

test('a request answered in a later turn, then collected, leaves the request in its slot alone', async () => {
  // In a child with --expose-gc: the first request is still unanswered when
  // its turn ends (so it is registered for collection), answered later and
  // dropped; the second takes its slot and must stay answerable however
  // often the collector runs.
  const script = `
    const ipcall = require(${JSON.stringify(require.resolve('ipcall'))})
    const server = ipcall.Server.bindUnique('mem')
    const client = ipcall.connect(server.name)
    const tick = () => new Promise((resolve) => setImmediate(resolve))
    ;(async () => {
      const first = client.call('a')
      let a = await server.recv()
      await tick()
      a.reply('A')
      a = null
      const out = [(await first).toString()]
      const second = client.call('b')
      const b = await server.recv()
      for (let i = 0; i < 20; i++) {
        globalThis.gc()
        await tick()
      }
      out.push(String(b.answered))
      b.reply('B')
      out.push((await second).toString())
      console.log(out.join(','))
      client.close()
      server.close()
    })()`
  const result = await runToEnd(process.execPath, ['--expose-gc', '-e', script])
  assert.equal(result.stderr, '')
  assert.equal(result.stdout.trim(), 'A,false,B')
})
