// Node <-> Rust in separate processes, over every transport that reaches
// another process (all but mem:): a Node server driven by the Rust peer's
// client script, and a Node client against the Rust peer's server. Kinds not
// in this build are skipped with the reason printed.
'use strict'

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')
const { caught, crossProcessKinds, ipcall, peerPath, peerSkipReason, runToEnd, startRustServer } = require('./helpers.js')

/** Answers the peer's script (DESIGN's scripted peer): "fail:<x>" fails, "noreply" is declined, the rest echoed. */
async function serveScript(server) {
  let served = 0
  for await (const req of server) {
    const data = req.data
    if (data.subarray(0, 5).toString() === 'fail:') req.fail(data.subarray(5))
    else if (data.toString() === 'noreply') req.close()
    else req.reply(data)
    served += 1
  }
  return served
}

for (const [kind, kindSkip] of crossProcessKinds()) {
  const skip = kindSkip || peerSkipReason()
  describe(`${kind}: Node <-> Rust across processes`, { skip }, () => {
    test('a Node server answers the Rust client script', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const serving = serveScript(server)
      const result = await runToEnd(peerPath, ['client', server.name, '--calls', '200'])
      assert.equal(result.stderr, '')
      assert.equal(result.stdout.trim(), 'ok 200')
      assert.equal(result.code, 0)
      server.close()
      // 200 echoes, one fail, one noreply.
      assert.equal(await serving, 202)
    })

    test('the Rust client finds a Node server through IPCALL_SERVER', async () => {
      const server = ipcall.Server.bindUnique(kind)
      const serving = serveScript(server)
      const result = await runToEnd(peerPath, ['client', '--calls', '5'], { env: { ...process.env, IPCALL_SERVER: server.name } })
      assert.equal(result.stdout.trim(), 'ok 5')
      assert.equal(result.code, 0)
      server.close()
      await serving
    })

    test('a Node client calls a Rust server: echo, REMOTE, NO_REPLY, then DISCONNECTED when it is killed', async () => {
      const { child, name } = await startRustServer(kind)
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try {
        assert.ok(name.startsWith(`${kind}:`), name)
        const client = await ipcall.connectAsync(name, { timeout: 10000 })
        const big = Buffer.alloc(1 << 20, 7)
        const replies = await Promise.all([client.call('hello'), client.call(big), client.call(new Uint8Array([1, 2, 3]))])
        assert.equal(replies[0].toString(), 'hello')
        assert.ok(replies[1].equals(big))
        assert.deepEqual([...replies[2]], [1, 2, 3])
        const remote = await caught(() => client.call('fail:boom'))
        assert.equal(remote.code, 'REMOTE')
        assert.equal(remote.payload.toString(), 'boom')
        assert.equal((await caught(() => client.call('noreply'))).code, 'NO_REPLY')
        assert.equal(client.callSync('sync').toString(), 'sync')
        child.kill('SIGKILL')
        await exited
        assert.equal((await caught(() => client.call('anyone?'))).code, 'DISCONNECTED')
        client.close()
      } finally {
        child.kill('SIGKILL')
      }
    })

    test('a one-shot Rust server serves one Node client, unbinds its name, and exits when that client closes', async () => {
      const { child, name } = await startRustServer(kind, ['--one-shot'])
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try {
        const client = await ipcall.connectAsync(name, { timeout: 10000 })
        assert.equal((await client.call('once')).toString(), 'once')
        // The name is gone at once: a second client is refused.
        assert.equal((await caught(() => ipcall.connect(name))).code, 'NOT_FOUND')
        client.close()
        assert.equal(await exited, 0)
      } finally {
        child.kill('SIGKILL')
      }
    })
  })
}

