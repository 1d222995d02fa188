// The event loop is never blocked and no thread is parked per call: timers
// and the libuv thread pool keep working while thousands of calls are in
// flight, and a process whose servers and clients are closed exits by itself.
// These are liveness checks (a blocked loop hangs the test); nothing is timed.
'use strict'

const assert = require('node:assert/strict')
const fs = require('node:fs')
const { describe, test } = require('node:test')
const { caught, intervalTicks, ipcall, kindsWithAvailability, runToEnd } = require('./helpers.js')

for (const [kind, skip] of kindsWithAvailability()) {
  describe(`${kind}: never blocks the event loop`, { skip }, () => {
    test('a setInterval keeps ticking while 1,000 calls are in flight', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const calls = Array.from({ length: 1000 }, (_, i) => client.call(`n${i}`))
      const held = []
      for (let i = 0; i < 1000; i++) held.push(await server.recv())
      // All 1,000 are in flight and unanswered; the loop must still turn.
      assert.equal(await intervalTicks(3), 3)
      for (const req of held) req.reply(Buffer.concat([Buffer.from('r'), req.data]))
      const replies = await Promise.all(calls)
      replies.forEach((reply, i) => assert.equal(reply.toString(), `rn${i}`))
      client.close()
      server.close()
    })

    test('a server that does not read (its socket full) does not block the event loop', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      // 16 MiB of requests: far more than a socket buffer holds.
      const calls = Array.from({ length: 256 }, () => caught(() => client.call(Buffer.alloc(64 << 10))))
      assert.equal(await intervalTicks(3), 3)
      client.close()
      for (const err of await Promise.all(calls)) assert.equal(err.code, 'CLOSED')
      server.close()
    })

    test('a setInterval keeps ticking while a server awaits recv()', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const received = server.recv()
      assert.equal(await intervalTicks(3), 3)
      const client = ipcall.connect(server.name)
      const reply = client.call('wake up')
      const req = await received
      req.reply('awake')
      assert.equal((await reply).toString(), 'awake')
      client.close()
      server.close()
    })

    test('10,000 concurrent calls on one client complete; the libuv thread pool stays free', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const count = 10000
      const calls = Array.from({ length: count }, (_, i) => client.call(String(i)))
      const held = []
      for (let i = 0; i < count; i++) held.push(await server.recv())
      // With a libuv worker parked per pending call the 4-thread pool would be
      // exhausted and this file read (which needs a pool thread) would never finish.
      const source = await fs.promises.readFile(__filename, 'utf8')
      assert.ok(source.includes('10,000 concurrent calls'))
      for (const req of held) req.reply(req.data)
      const replies = await Promise.all(calls)
      replies.forEach((reply, i) => assert.equal(reply.toString(), String(i)))
      client.close()
      server.close()
    })

    test('10,000 calls answered by a for-await server as they come', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const serving = (async () => {
        let answered = 0
        for await (const req of server) {
          req.reply(req.data)
          answered += 1
        }
        return answered
      })()
      const client = ipcall.connect(server.name)
      const replies = await Promise.all(Array.from({ length: 10000 }, (_, i) => client.call(`${i}`)))
      replies.forEach((reply, i) => assert.equal(reply.toString(), `${i}`))
      server.close()
      assert.equal(await serving, 10000)
      client.close()
    })
  })
}

for (const [kind, skip] of kindsWithAvailability()) {
  describe(`${kind}: closing lets the process exit by itself`, { skip }, () => {
    // Each script leaves something that would hold the loop if close() did not
    // release it; the child must exit with code 0 on its own.
    // [script, what it prints]
    const scripts = {
      'a server awaiting recv() is closed': [`
        const server = ipcall.Server.bindUnique('${kind}')
        server.recv().catch((err) => console.log(err.code))
        setImmediate(() => server.close())`, 'CLOSED'],
      'a for-await loop ends when its server is closed': [`
        const server = ipcall.Server.bindUnique('${kind}')
        ;(async () => { for await (const req of server) req.reply(req.data); console.log('loop ended') })()
        const client = ipcall.connect(server.name)
        client.call('x').then(() => { client.close(); server.close() })`, 'loop ended'],
      'a client with a call the server never answers is closed': [`
        const server = ipcall.Server.bindUnique('${kind}')
        const client = ipcall.connect(server.name)
        client.call('never answered').catch((err) => console.log(err.code))
        server.recv().then((req) => { globalThis.held = req; client.close(); server.close() })`, 'CLOSED'],
    }
    for (const [what, [body, printed]] of Object.entries(scripts)) {
      test(what, async () => {
        const script = `const ipcall = require(${JSON.stringify(require.resolve('ipcall'))})\n${body}`
        // A child kept alive by a handle would never exit: the generous
        // timeout kills it so that the failure is reported, not a stuck run.
        const result = await runToEnd(process.execPath, ['-e', script], { timeout: 60000 })
        assert.equal(result.signal, null, 'the child had to be killed: something kept it alive')
        assert.equal(result.stderr, '')
        assert.equal(result.stdout, `${printed}\n`)
        assert.equal(result.code, 0)
      })
    }

    test('a call in flight when its client closes rejects with CLOSED in this process too', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const call = caught(() => client.call('x'))
      await server.recv()
      client.close()
      assert.equal((await call).code, 'CLOSED')
      server.close()
    })
  })
}
