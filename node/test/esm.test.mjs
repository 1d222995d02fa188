// The package through ESM: the default import is the CommonJS exports object,
// and the named exports are detected from index.js.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import ipcall, { Server, connect, connectAsync, availableKinds } from 'ipcall'

test('ESM: default and named imports are the same functions', () => {
  assert.equal(ipcall.Server, Server)
  assert.equal(ipcall.connect, connect)
  assert.equal(ipcall.connectAsync, connectAsync)
  assert.ok(availableKinds().includes('mem'))
})

test('ESM: a round trip with for await and top-level await', async () => {
  const server = Server.bindUnique('mem')
  const serving = (async () => {
    for await (const req of server) req.reply(Buffer.from(req.data.toString().toUpperCase()))
  })()
  const client = connect(server.name)
  assert.equal((await client.call('esm')).toString(), 'ESM')
  client.close()
  server.close()
  await serving
})
