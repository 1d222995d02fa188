// server.drain(): graceful close over every transport that binds in this build.
'use strict'

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')
const { caught, ipcall, kindsWithAvailability } = require('./helpers.js')

for (const [kind, skip] of kindsWithAvailability()) {
  describe(`${kind}:`, { skip }, () => {
    test('drain answers the request taken, refuses new calls and connects, resolves true', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const owed = client.call(Buffer.from('taken'))
      const req = await server.recv()
      const draining = server.drain(30000)
      // drain() closed at once: the name is gone, later calls are refused.
      assert.equal((await caught(() => ipcall.connect(server.name))).code, 'NOT_FOUND')
      assert.equal((await caught(() => client.call(Buffer.from('after')))).code, 'DISCONNECTED')
      assert.equal((await caught(() => server.recv())).code, 'CLOSED')
      // The JavaScript thread is free while drain waits: it answers here.
      req.reply(Buffer.from('answered'))
      assert.equal((await owed).toString(), 'answered')
      assert.equal(await draining, true)
      client.close()
    })

    // Over shm this once made the JavaScript thread spin: the client's
    // progress looped on the server's applied close while a call it took
    // was still pending (core fix: tests/server_close.rs).
    test('drain resolves false at its timeout when a request stays unanswered', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const client = ipcall.connect(server.name)
      const owed = client.call(Buffer.from('held'))
      const req = await server.recv()
      assert.equal(await server.drain(50), false)
      req.close()
      assert.equal((await caught(() => owed)).code, 'NO_REPLY')
      client.close()
    })

    test('drain of an idle server resolves true at once; a bad timeout is a TypeError', async () => {
      const server = ipcall.Server.bindUnique(kind)
      assert.throws(() => server.drain(-1), TypeError)
      assert.equal(await server.drain(), true)
    })
  })
}
