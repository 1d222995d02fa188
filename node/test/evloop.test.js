// Calls and receives driven by libuv on the JavaScript thread: replies
// matched by id under load, a server and a client in one process on every
// transport, a server killed mid-call, idle processes that exit by
// themselves, worker threads torn down with calls and receives pending.
// Liveness only: every wait is bounded, nothing is timed.
'use strict'

const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const readline = require('node:readline')
const { Worker } = require('node:worker_threads')
const { describe, test } = require('node:test')
const {
  caught,
  crossProcessKinds,
  ipcall,
  kindsWithAvailability,
  peerSkipReason,
  runToEnd,
  startRustServer,
} = require('./helpers.js')

const modulePath = require.resolve('ipcall')

/** Runs `body` (with `ipcall` in scope) in a child node; resolves { code, signal, stdout, stderr }. */
function runScript(body, timeout = 60000) {
  const script = `const ipcall = require(${JSON.stringify(modulePath)})\n${body}`
  return runToEnd(process.execPath, ['-e', script], { timeout })
}

for (const [kind, skip] of kindsWithAvailability()) {
  describe(`${kind}: awaits settle on the JavaScript thread`, { skip }, () => {
    test('10,000 concurrent calls answered in reverse order all get their own reply', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const count = 10000
      const calls = Array.from({ length: count }, (_, i) => client.call(`call ${i}`))
      const held = []
      for (let i = 0; i < count; i++) held.push(await server.recv())
      for (const req of held.reverse()) req.reply(Buffer.concat([req.data, Buffer.from(' done')]))
      const replies = await Promise.all(calls)
      replies.forEach((reply, i) => assert.equal(reply.toString(), `call ${i} done`))
      client.close()
      server.close()
    })

    test('a for-await server and 100 clients in this process, 20 calls each in flight', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const serving = (async () => {
        for await (const req of server) req.reply(Buffer.concat([Buffer.from('re:'), req.data]))
      })()
      const clients = Array.from({ length: 100 }, () => ipcall.connect(server.name))
      const replies = await Promise.all(
        clients.flatMap((client, c) => Array.from({ length: 20 }, (_, i) => client.call(`${c}.${i}`))),
      )
      replies.forEach((reply, n) => assert.equal(reply.toString(), `re:${Math.floor(n / 20)}.${n % 20}`))
      for (const client of clients) client.close()
      server.close()
      await serving
    })

    test('requests that find no room (a small shm: ring, a full socket) leave in call order and are all answered', async () => {
      const server = ipcall.Server.bindUnique(kind, kind === 'shm' ? { ringSize: 65536 } : {})
      const client = ipcall.connect(server.name)
      // 4 MiB of requests before the server reads any: far more than a ring
      // or a socket buffer holds, so later ones wait (writer thread, outbox).
      const count = 256
      const body = (i) => Buffer.concat([Buffer.from(`${i};`), Buffer.alloc(16 << 10, i & 0xff)])
      const calls = Array.from({ length: count / 2 }, (_, i) => client.call(body(i)))
      // Given up while still queued behind the others: abandoned, its late answer discarded.
      const timedOut = caught(() => client.call('t;', { timeout: 1 }))
      for (let i = count / 2; i < count; i++) calls.push(client.call(body(i)))
      assert.equal((await timedOut).code, 'TIMEOUT')
      const order = []
      const serving = (async () => {
        for await (const req of server) {
          const head = req.data.subarray(0, req.data.indexOf(';')).toString()
          order.push(head)
          req.reply(head)
        }
      })()
      const replies = await Promise.all(calls)
      replies.forEach((reply, i) => assert.equal(reply.toString(), String(i)))
      assert.deepEqual(order, [...replies.slice(0, count / 2), 't', ...replies.slice(count / 2)].map(String))
      client.close()
      server.close()
      await serving
    })

    test('timeouts fire without a thread: per call, the others unaffected', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const timedOut = caught(() => client.call('held', { timeout: 30 }))
      const answered = client.call('answered', { timeout: 60000 })
      const plain = client.call('plain')
      const reqs = [await server.recv(), await server.recv(), await server.recv()]
      assert.equal((await timedOut).code, 'TIMEOUT')
      for (const req of reqs) req.reply(req.data)
      assert.equal((await answered).toString(), 'answered')
      assert.equal((await plain).toString(), 'plain')
      assert.equal((await caught(() => server.recv({ timeout: 20 }))).code, 'TIMEOUT')
      assert.equal((await caught(() => server.recv({ timeout: 0 }))).code, 'TIMEOUT')
      client.close()
      server.close()
    })

    test('a client whose calls are answered lets its process exit; so does a server with no recv() pending', async () => {
      const result = await runScript(`
        const server = ipcall.Server.bindUnique('${kind}')
        server.recv().then((req) => req.reply('first'))
        const client = ipcall.connect(server.name)
        client.call('x').then(async (reply) => {
          const second = client.call('y', { timeout: 60000 })
          ;(await server.recv()).reply('second')
          console.log(reply.toString(), (await second).toString())
          // Neither is closed: nothing waits, so nothing holds the loop.
        })`)
      assert.equal(result.signal, null, 'the child had to be killed: something kept it alive')
      assert.equal(result.stderr, '')
      assert.equal(result.stdout, 'first second\n')
      assert.equal(result.code, 0)
    })

    test('a process whose queued requests (writer thread) were all answered exits by itself', async () => {
      const result = await runScript(`
        const server = ipcall.Server.bindUnique('${kind}', ${kind === 'shm' ? '{ ringSize: 65536 }' : '{}'})
        const client = ipcall.connect(server.name)
        const calls = Array.from({ length: 128 }, () => client.call(Buffer.alloc(32 << 10)))
        ;(async () => {
          for (let i = 0; i < 128; i++) (await server.recv()).reply('ok')
          await Promise.all(calls)
          console.log('answered')
        })()`)
      assert.equal(result.signal, null, 'the child had to be killed: something kept it alive')
      assert.equal(result.stderr, '')
      assert.equal(result.stdout, 'answered\n')
      assert.equal(result.code, 0)
    })

    test('a worker thread that ends with a recv() and a call pending is torn down cleanly', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const worker = new Worker(
        `const { workerData, parentPort } = require('node:worker_threads')
         const ipcall = require(workerData.module)
         const own = ipcall.Server.bindUnique(workerData.kind)
         own.recv()
         const client = ipcall.connect(workerData.name)
         client.call('from the worker', { timeout: 600000 })
         parentPort.postMessage('waiting')`,
        { eval: true, workerData: { module: modulePath, name: server.name, kind } },
      )
      const exited = new Promise((resolve, reject) => {
        worker.once('exit', resolve)
        worker.once('error', reject)
      })
      await new Promise((resolve) => worker.once('message', resolve))
      const req = await server.recv({ timeout: 60000 })
      assert.equal(req.data.toString(), 'from the worker')
      await worker.terminate()
      assert.equal(await exited, 1)
      // The worker's connection is gone; answering it is harmless.
      req.reply('too late')
      server.close()
    })
  })
}

for (const [kind, kindSkip] of crossProcessKinds()) {
  const skip = kindSkip || peerSkipReason()
  describe(`${kind}: calls answered at once still let the loop turn`, { skip }, () => {
    test('sequential awaited calls to a Rust server: a setImmediate scheduled before them runs', async () => {
      // A call whose reply is there before call() returns settles inside
      // call(); a bounded number in a row, then one waits for the loop, so
      // a loop of such calls never starves the loop's own callbacks.
      const { child, name } = await startRustServer(kind)
      try {
        const client = await ipcall.connectAsync(name, { timeout: 10000 })
        let turned = false
        setImmediate(() => (turned = true))
        let calls = 0
        while (!turned && calls < 10000) {
          assert.equal((await client.call(`call ${calls}`)).toString(), `call ${calls}`)
          calls += 1
        }
        assert.ok(turned, `the loop did not turn during ${calls} calls`)
        client.close()
      } finally {
        child.kill()
      }
    })
  })
}

for (const [kind, skip] of crossProcessKinds()) {
  describe(`${kind}: a server killed mid-call`, { skip }, () => {
    test('its calls in flight reject with DISCONNECTED; later calls too', async () => {
      // A Node server in a child process that takes requests and never answers.
      const script = `const ipcall = require(${JSON.stringify(modulePath)})
        const server = ipcall.Server.bindUnique('${kind}')
        console.log(server.name)
        const held = []
        ;(async () => { for await (const req of server) { held.push(req); if (held.length === 3) console.log('held') } })()`
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try {
        const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]()
        const name = (await lines.next()).value.trim()
        const client = await ipcall.connectAsync(name, { timeout: 30000 })
        const calls = [1, 2, 3].map((i) => caught(() => client.call(`held ${i}`)))
        assert.equal((await lines.next()).value, 'held')
        child.kill('SIGKILL')
        await exited
        for (const err of await Promise.all(calls)) assert.equal(err.code, 'DISCONNECTED')
        assert.equal((await caught(() => client.call('anyone?'))).code, 'DISCONNECTED')
        client.close()
      } finally {
        child.kill('SIGKILL')
      }
    })
  })
}

for (const [kind, skip] of crossProcessKinds()) {
  describe(`${kind}: an idle process sleeps`, { skip }, () => {
    test('with a recv() and a call pending it uses almost no CPU for 2 s, after a burst of fast calls', async () => {
      // A Node server in a child process: answers the first 300 requests,
      // then holds the next one (the burst primes the brief spin's budget).
      const script = `const ipcall = require(${JSON.stringify(modulePath)})
        const server = ipcall.Server.bindUnique('${kind}')
        console.log(server.name)
        const held = []
        let n = 0
        ;(async () => { for await (const req of server) { if (++n <= 300) req.reply(req.data); else { held.push(req); console.log('held') } } })()`
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try {
        const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]()
        const name = (await lines.next()).value.trim()
        const client = await ipcall.connectAsync(name, { timeout: 30000 })
        for (let i = 0; i < 300; i++) assert.equal((await client.call(`fast ${i}`)).toString(), `fast ${i}`)
        const call = caught(() => client.call('held'))
        assert.equal((await lines.next()).value, 'held')
        const local = ipcall.Server.bindUnique(kind)
        const receiving = caught(() => local.recv())
        const before = process.cpuUsage()
        await new Promise((resolve) => setTimeout(resolve, 2000))
        const used = process.cpuUsage(before)
        // A loop that spun while idle would use ~2 s of CPU; sleeping, ~none.
        // Generous bound: a loaded machine only makes it smaller.
        assert.ok(used.user + used.system < 400000, `idle for 2 s used ${used.user + used.system} µs of CPU`)
        client.close()
        assert.equal((await call).code, 'CLOSED')
        local.close()
        assert.equal((await receiving).code, 'CLOSED')
      } finally {
        child.kill('SIGKILL')
        await exited
      }
    })
  })
}
