// The DESIGN §10 API over every transport that binds in this build; each
// test runs client and server in this process (cross-process: peer.test.js).
'use strict'

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')
const { caught, ipcall, kindsWithAvailability } = require('./helpers.js')

/** Echo server: answers every request with its own bytes until closed. */
async function serveEcho(server) {
  for await (const req of server) req.reply(req.data)
}

for (const [kind, skip] of kindsWithAvailability()) {
  describe(`${kind}:`, { skip }, () => {
    test('a call gets its reply; req.data is a Buffer, req.peer names this process', async () => {
      const server = ipcall.Server.bindUnique(kind)
      assert.ok(server.name.startsWith(`${kind}:`))
      const client = ipcall.connect(server.name)
      assert.equal(client.name, server.name)
      const reply = client.call(Buffer.from('ping'))
      const req = await server.recv()
      assert.ok(Buffer.isBuffer(req.data))
      assert.equal(req.data.toString(), 'ping')
      assert.equal(req.data, req.data, 'the same Buffer on every read')
      assert.equal(req.peer.pid, process.pid)
      if (req.peer.uid !== undefined) assert.equal(req.peer.uid, process.getuid())
      assert.equal(req.answered, false)
      req.reply(Buffer.concat([Buffer.from('pong:'), req.data]))
      assert.equal(req.answered, true)
      assert.equal((await reply).toString(), 'pong:ping')
      client.close()
      server.close()
    })

    test('Buffers, every TypedArray, DataView, ArrayBuffer and strings are accepted', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const serving = serveEcho(server)
      const client = ipcall.connect(server.name)
      const backing = new ArrayBuffer(16)
      new Uint8Array(backing).forEach((_, i, a) => (a[i] = i + 1))
      const inputs = [
        [Buffer.from([1, 2, 3]), [1, 2, 3]],
        [new Uint8Array(backing, 4, 3), [5, 6, 7]],
        [new Uint16Array(backing, 2, 2), [3, 4, 5, 6]],
        [new Int32Array(backing, 8, 1), [9, 10, 11, 12]],
        [new Float64Array(backing, 8, 1), [9, 10, 11, 12, 13, 14, 15, 16]],
        [new BigUint64Array(backing, 0, 1), [1, 2, 3, 4, 5, 6, 7, 8]],
        [new DataView(backing, 14, 2), [15, 16]],
        [backing.slice(0, 2), [1, 2]],
        ['héllo', [...Buffer.from('héllo', 'utf8')]],
        ['', []],
        [new Uint8Array(0), []],
      ]
      for (const [input, expected] of inputs) {
        assert.deepEqual([...(await client.call(input))], expected, `${input.constructor.name} input`)
      }
      const typeError = await caught(() => client.call(42))
      assert.equal(typeError.name, 'TypeError')
      assert.equal(typeError.code, 'ERR_INVALID_ARG_TYPE')
      client.close()
      server.close()
      await serving
    })

    test('for await yields requests until close() ends the loop', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const seen = []
      const serving = (async () => {
        for await (const req of server) {
          seen.push(req.data.toString())
          req.reply(req.data)
        }
        return 'loop ended'
      })()
      const client = ipcall.connect(server.name)
      for (const word of ['a', 'b', 'c']) assert.equal((await client.call(word)).toString(), word)
      server.close()
      assert.equal(await serving, 'loop ended')
      assert.deepEqual(seen, ['a', 'b', 'c'])
      client.close()
    })

    test('leaving a for await loop early leaves the server open', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const first = client.call('first')
      for await (const req of server) {
        req.reply('one')
        break
      }
      assert.equal((await first).toString(), 'one')
      const second = client.call('second')
      ;(await server.recv()).reply('two')
      assert.equal((await second).toString(), 'two')
      client.close()
      server.close()
    })

    test('pipelined calls are matched to their replies by id, not by order', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const calls = Array.from({ length: 20 }, (_, i) => client.call(`call-${i}`))
      const requests = []
      for (let i = 0; i < 20; i++) requests.push(await server.recv())
      for (const req of requests.reverse()) req.reply(Buffer.concat([req.data, Buffer.from('!')]))
      const replies = await Promise.all(calls)
      replies.forEach((reply, i) => assert.equal(reply.toString(), `call-${i}!`))
      client.close()
      server.close()
    })

    test('tryRecv never waits; recv honours a timeout', async () => {
      const server = ipcall.Server.bindUnique(kind)
      assert.equal(server.tryRecv(), null)
      const err = await caught(() => server.recv({ timeout: 10 }))
      assert.equal(err.code, 'TIMEOUT')
      const client = ipcall.connect(server.name)
      const reply = client.call('now')
      let req = null
      while (req === null) {
        req = server.tryRecv()
        if (req === null) await new Promise((resolve) => setImmediate(resolve))
      }
      req.reply('ok')
      assert.equal((await reply).toString(), 'ok')
      client.close()
      server.close()
    })

    test('a request stays answerable after its server was closed', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const reply = client.call('late')
      const req = await server.recv()
      server.close()
      req.reply('answered after close')
      assert.equal((await reply).toString(), 'answered after close')
      client.close()
    })

    test('connectAsync waits for a server that appears later', async () => {
      const name = `${kind}:` + (kind === 'mem' ? `late-${process.pid}` : ipcall.Server.bindUnique(kind).name.slice(kind.length + 1) + '-late')
      const connecting = ipcall.connectAsync(name, { timeout: 30000 })
      await new Promise((resolve) => setImmediate(resolve))
      const server = ipcall.Server.bind(name)
      const serving = serveEcho(server)
      const client = await connecting
      assert.equal((await client.call('hello')).toString(), 'hello')
      client.close()
      server.close()
      await serving
    })

    test('callSync blocks for the answer of a server in another thread of this process', async () => {
      // A server answered by this same thread cannot answer while callSync
      // blocks it, so the answer comes from a worker thread.
      const { Worker } = require('node:worker_threads')
      const server = ipcall.Server.bindUnique(kind)
      const worker = new Worker(
        `const { workerData, parentPort } = require('node:worker_threads')
         const ipcall = require(workerData.module)
         const client = ipcall.connect(workerData.name)
         const replies = [client.callSync('sync-1').toString(), client.callSync(new Uint8Array([50])).toString()]
         let timeout = null
         try { client.callSync('hold', { timeout: 20 }) } catch (err) { timeout = err.code }
         client.close()
         parentPort.postMessage({ replies, timeout })`,
        { eval: true, workerData: { module: require.resolve('ipcall'), name: server.name } },
      )
      const result = new Promise((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
      })
      let held = null
      for (let i = 0; i < 3; i++) {
        const req = await server.recv()
        if (req.data.toString() === 'hold') held = req // unanswered until the worker timed out
        else req.reply(Buffer.concat([Buffer.from('sync:'), req.data]))
      }
      const { replies, timeout } = await result
      held.reply('too late: discarded')
      assert.deepEqual(replies, ['sync:sync-1', 'sync:2'])
      assert.equal(timeout, 'TIMEOUT')
      server.close()
    })
  })
}
