// The caller's deadline on the request (`req.deadline`): a call with a
// timeout carries it — `call` (also when its request waits for room) and
// `callSync` — as a `performance.now()` value on the server's side, over
// every local transport; a plain call has null.
'use strict'

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')
const { Worker } = require('node:worker_threads')
const { ipcall, kindsWithAvailability } = require('./helpers.js')

const HUNDRED_YEARS_MS = 100 * 365 * 24 * 60 * 60 * 1000

/**
 * Whether `req.deadline` is what its data says its caller's timeout was:
 * `-` none, `max` a "forever" one (clamped to 100 years), else that many
 * ms (the data may go on after a space). Returns 'none', 'ok' or what is wrong.
 */
function verdict(req) {
  const expected = req.data.toString().split(' ')[0]
  const deadline = req.deadline
  const now = performance.now()
  if (deadline !== req.deadline) return 'a different number on a second read'
  if (deadline === null) return expected === '-' ? 'none' : 'missing'
  if (typeof deadline !== 'number') return `not a number: ${deadline}`
  if (expected === '-') return `unexpected, ${deadline - now} ms away`
  if (expected === 'max') {
    const left = deadline - now
    return left > HUNDRED_YEARS_MS - 3600e3 && left <= HUNDRED_YEARS_MS ? 'ok' : `${left} ms away, not clamped`
  }
  // The caller's remaining time counts from the request's arrival, before `now`.
  return now <= deadline && deadline <= now + Number(expected) ? 'ok' : `${deadline - now} ms away, timeout ${expected} ms`
}

async function judge(server) {
  for await (const req of server) {
    const answer = verdict(req)
    req.reply(answer)
    if (req.deadline !== req.deadline) throw new Error('deadline changed after the answer')
  }
}

for (const [kind, skip] of kindsWithAvailability()) {
  describe(`${kind}:`, { skip }, () => {
    test('call with a timeout carries its deadline; a plain call has null', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const judging = judge(server)
      const client = ipcall.connect(server.name)
      assert.equal((await client.call('60000', { timeout: 60000 })).toString(), 'ok')
      assert.equal((await client.call('-')).toString(), 'none')
      // Longer than a Duration holds: the longest one, clamped to 100 years.
      assert.equal((await client.call('max', { timeout: Number.MAX_VALUE })).toString(), 'ok')
      // Many at once, timed or not.
      const replies = await Promise.all(
        Array.from({ length: 40 }, (_, i) => client.call(i % 2 ? `60000 ${i}` : `- ${i}`, i % 2 ? { timeout: 60000 } : {})),
      )
      assert.deepEqual(
        replies.map((r) => r.toString()),
        Array.from({ length: 40 }, (_, i) => (i % 2 ? 'ok' : 'none')),
      )
      client.close()
      server.close()
      await judging
    })

    test('callSync with a timeout carries its deadline; without, null', async () => {
      // callSync blocks its thread: the calls come from a worker thread.
      const server = ipcall.Server.bindUnique(kind)
      const judging = judge(server)
      const worker = new Worker(
        `const { workerData, parentPort } = require('node:worker_threads')
         const ipcall = require(workerData.module)
         const client = ipcall.connect(workerData.name)
         const replies = [
           client.callSync('60000', { timeout: 60000 }).toString(),
           client.callSync('-').toString(),
           client.callSync('max', { timeout: Number.MAX_VALUE }).toString(),
         ]
         client.close()
         parentPort.postMessage(replies)`,
        { eval: true, workerData: { module: require.resolve('ipcall'), name: server.name } },
      )
      // Listening for 'exit' from the start: a worker that ends before its
      // message is handled has the message and 'exit' emitted in one go,
      // and a listener added after the message would wait forever (this
      // hung under load).
      const exited = new Promise((resolve) => worker.once('exit', resolve))
      const replies = await new Promise((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
      })
      assert.deepEqual(replies, ['ok', 'none', 'ok'])
      await exited
      server.close()
      await judging
    })
  })
}

test('shm: calls whose requests wait for room keep their deadline', async (t) => {
  if (!ipcall.availableKinds().includes('shm')) return t.skip('shm: not in this build')
  // A 4 KiB request ring takes two of these at a time: the rest go through
  // the client's writer thread as the server frees room.
  const server = ipcall.Server.bindUnique('shm', { ringSize: 4096 })
  const judging = judge(server)
  const client = ipcall.connect(server.name)
  const padding = ' ' + 'x'.repeat(1500)
  const replies = await Promise.all(
    Array.from({ length: 30 }, (_, i) => client.call((i % 2 ? '60000' : '-') + padding, i % 2 ? { timeout: 60000 } : {})),
  )
  assert.deepEqual(
    replies.map((r) => r.toString()),
    Array.from({ length: 30 }, (_, i) => (i % 2 ? 'ok' : 'none')),
  )
  client.close()
  server.close()
  await judging
})
