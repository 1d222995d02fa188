// The package through CommonJS require(), by its package name.
'use strict'

const assert = require('node:assert/strict')
const { test } = require('node:test')

test('CommonJS: require("ipcall") exposes the documented API', async () => {
  const ipcall = require('ipcall')
  for (const name of ['Server', 'Client', 'Request', 'connect', 'connectAsync', 'availableKinds', 'version']) {
    assert.equal(typeof ipcall[name], 'function', name)
  }
  assert.equal(ipcall.version(), require('../package.json').version)
  const server = ipcall.Server.bindUnique('mem')
  const client = ipcall.connect(server.name)
  const reply = client.call('cjs')
  const req = await server.recv()
  assert.ok(req instanceof ipcall.Request)
  assert.ok(client instanceof ipcall.Client)
  req.reply(req.data)
  assert.equal((await reply).toString(), 'cjs')
  client.close()
  server.close()
})

test('CommonJS: classes cannot be constructed directly', () => {
  const ipcall = require('ipcall')
  assert.throws(() => new ipcall.Server())
  assert.throws(() => new ipcall.Client())
})
