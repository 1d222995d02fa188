// Worker pools: Server.bind(name, { pool: true }) over every transport that
// reaches other processes; one client spreads its calls over the members.
'use strict'

const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const { describe, test } = require('node:test')
const { caught, crossProcessKinds, ipcall } = require('./helpers.js')

let counter = 0
/** A fresh pool name of `kind` (nothing is ever bound at its address). */
function poolName(kind) {
  counter += 1
  return `${kind}:${path.join(os.tmpdir(), `ipcall-node-pool-${process.pid}-${counter}`)}`
}

/** Answers `<tag>:<request>` until the server closes. */
async function serve(server, tag) {
  for (;;) {
    let req
    try {
      req = await server.recv()
    } catch (error) {
      assert.equal(error.code, 'CLOSED')
      return
    }
    req.reply(Buffer.concat([Buffer.from(`${tag}:`), req.data]))
  }
}

/** A Node worker process in the pool `name`: resolves with it once it serves. */
function startWorker(name) {
  const script = `
    const ipcall = require('ipcall')
    const server = ipcall.Server.bind(process.argv[1], { pool: true })
    console.log('ready')
    ;(async () => {
      for (;;) {
        const req = await server.recv()
        req.reply(Buffer.concat([Buffer.from(process.pid + ':'), req.data]))
      }
    })()
  `
  const child = spawn(process.execPath, ['-e', script, name], { stdio: ['ignore', 'pipe', 'inherit'], cwd: __dirname })
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', () => resolve(child))
    child.once('error', reject)
    child.once('exit', (code, signal) => reject(new Error(`worker exited early (code ${code}, signal ${signal})`)))
  })
}

for (const [kind, skip] of crossProcessKinds()) {
  describe(`${kind}:`, { skip }, () => {
    test('three members share the calls; one closed, the others take the rest', async () => {
      const name = poolName(kind)
      const members = [0, 1, 2].map(() => ipcall.Server.bind(name, { pool: true }))
      const serving = members.map((server, i) => serve(server, 'abc'[i]))
      const client = ipcall.connect(name)
      const replies = await Promise.all(Array.from({ length: 90 }, (_, i) => client.call(Buffer.from(`call ${i}`))))
      replies.forEach((reply, i) => assert.equal(reply.toString().slice(2), `call ${i}`))
      assert.deepEqual(new Set(replies.map((r) => r.toString()[0])), new Set(['a', 'b', 'c']))
      // A plain server cannot take the pool's name.
      assert.equal((await caught(() => ipcall.Server.bind(name))).code, 'ADDR_IN_USE')

      members[1].close()
      const after = new Set()
      let disconnected = 0
      for (let i = 0; i < 60; i++) {
        try {
          after.add((await client.call(Buffer.from('after'))).toString()[0])
        } catch (error) {
          // Only a call sent before the client saw the member go may fail.
          assert.equal(error.code, 'DISCONNECTED')
          disconnected += 1
        }
      }
      assert.ok(disconnected <= 1, `${disconnected} calls failed`)
      assert.deepEqual(after, new Set(['a', 'c']))
      client.close()
      members.forEach((server) => server.close())
      await Promise.all(serving)
    })

    test('a client calls across a pool of worker processes', async () => {
      const name = poolName(kind)
      const workers = await Promise.all([startWorker(name), startWorker(name)])
      try {
        const client = ipcall.connect(name)
        const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => client.call(Buffer.from(`w ${i}`))))
        const pids = new Set(replies.map((r) => Number(r.toString().split(':')[0])))
        assert.deepEqual(pids, new Set(workers.map((w) => w.pid)))
        client.close()
      } finally {
        for (const worker of workers) {
          const exited = new Promise((resolve) => worker.once('exit', resolve))
          worker.kill('SIGKILL')
          await exited
        }
        // Their entries stay after SIGKILL; a listing (any bind) removes them.
        ipcall.Server.bind(name).close()
      }
    })
  })
}

test('pool is refused for mem: names and bindUnique', async () => {
  assert.equal((await caught(() => ipcall.Server.bind(`mem:node-pool-${process.pid}`, { pool: true }))).code, 'INVALID_NAME')
  assert.equal((await caught(() => ipcall.Server.bindUnique('unix', { pool: true }))).code, 'INVALID_NAME')
})
