// server.stats(), client.serverStats() and client.ping(): counted and
// answered by ipcall itself, never by the application, over every transport
// that binds in this build.
'use strict'

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')
const { caught, ipcall, kindsWithAvailability } = require('./helpers.js')

/** Answers requests until the server closes: `f...` fails, `d` is dropped, the rest echoes. */
async function serve(server) {
  for (;;) {
    let req
    try {
      req = await server.recv()
    } catch (e) {
      assert.equal(e.code, 'CLOSED')
      return
    }
    const data = req.data.toString()
    if (data.startsWith('f')) req.fail(Buffer.from(data.slice(1)))
    else if (data === 'd') req.close()
    else req.reply(req.data)
  }
}

for (const [kind, skip] of kindsWithAvailability()) {
  describe(`${kind}:`, { skip }, () => {
    test('stats count exactly what was done, here and from a client', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const serving = serve(server)
      assert.equal((await client.call(Buffer.from('hello'))).toString(), 'hello')
      assert.equal((await caught(() => client.call(Buffer.from('fno')))).code, 'REMOTE')
      assert.equal((await caught(() => client.call(Buffer.from('d')))).code, 'NO_REPLY')
      const rtt = await client.ping({ timeout: 30000 })
      assert.ok(rtt > 0 && rtt < 30000, `${rtt}`)
      for (const stats of [server.stats(), await client.serverStats({ timeout: 30000 })]) {
        assert.equal(stats.calls, 3)
        assert.equal(stats.replies, 1)
        assert.equal(stats.fails, 1)
        assert.equal(stats.noReplies, 1)
        assert.equal(stats.inFlight, 0)
        assert.equal(stats.bytesIn, 5 + 3 + 1)
        assert.equal(stats.bytesOut, 5 + 2)
        assert.deepEqual(stats.errors, { NO_REPLY: 1, REMOTE: 1 })
        assert.equal(stats.latency.length, 32)
        assert.equal(stats.latency.reduce((a, b) => a + b, 0), 3)
        assert.equal(stats.connections, kind === 'mem' ? 0 : 1)
        assert.ok(stats.uptimeMs > 0)
      }
      server.close()
      await serving
      client.close()
    })

    test('ping is answered while nobody receives, and fails clearly once the server is gone', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      assert.ok((await client.ping()) > 0)
      assert.equal((await client.serverStats()).calls, 0)
      server.close()
      assert.equal((await caught(() => client.ping({ timeout: 30000 }))).code, 'DISCONNECTED')
      client.close()
      assert.equal((await caught(() => client.ping())).code, 'CLOSED')
      await assert.rejects(async () => client.serverStats({ timeout: -1 }), TypeError)
    })
  })
}
