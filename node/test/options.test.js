// The waitMode and connectionName options: every server wait mode with every
// client wait mode carries calls over shm: (a Node server in this process,
// and callSync against a Rust server process); bad values are TypeErrors
// (ERR_INVALID_ARG_TYPE) naming the option. What a nats: server sees of a
// connection name is tested in nats.test.js.
'use strict'

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')
const { caught, ipcall, kindsWithAvailability, peerSkipReason, startRustServer } = require('./helpers.js')

const MODES = ['adaptive', 'spin', 'block']
const shmSkip = kindsWithAvailability().find(([kind]) => kind === 'shm')[1]

async function echoAll(server) {
  for await (const req of server) req.reply(req.data)
}

describe('waitMode', () => {
  for (const serverMode of MODES) {
    test(`shm: server in ${serverMode} mode answers clients of every mode`, { skip: shmSkip }, async () => {
      const server = ipcall.Server.bindUnique('shm', { waitMode: serverMode })
      const serving = echoAll(server)
      for (const clientMode of MODES) {
        const client = await ipcall.connectAsync(server.name, { waitMode: clientMode, timeout: 10000 })
        const big = Buffer.alloc(3 << 20, 7) // larger than the ring: streams through it
        const replies = await Promise.all([client.call(`${serverMode}/${clientMode}`), client.call(big)])
        assert.equal(replies[0].toString(), `${serverMode}/${clientMode}`)
        assert.ok(replies[1].equals(big))
        client.close()
      }
      server.close()
      await serving
    })
  }

  test('callSync in every mode against a Rust shm: server process', { skip: shmSkip || peerSkipReason() }, async () => {
    const { child, name } = await startRustServer('shm')
    try {
      for (const waitMode of MODES) {
        const client = ipcall.connect(name, { waitMode })
        for (let i = 0; i < 20; i += 1) {
          assert.equal(client.callSync(`sync ${waitMode} ${i}`, { timeout: 60000 }).toString(), `sync ${waitMode} ${i}`)
        }
        client.close()
      }
    } finally {
      child.kill('SIGKILL')
    }
  })

  test('other transports accept and ignore it', async () => {
    const server = ipcall.Server.bindUnique('unix', { waitMode: 'spin' })
    const serving = echoAll(server)
    const client = await ipcall.connectAsync(server.name, { waitMode: 'block' })
    assert.equal((await client.call('x')).toString(), 'x')
    client.close()
    server.close()
    await serving
  })

  test('a value that names no mode is a TypeError (ERR_INVALID_ARG_TYPE) naming the option', async () => {
    for (const waitMode of ['', 'Spin', 'busy', 'spin ', 1, true]) {
      const attempts = [
        () => ipcall.Server.bindUnique('mem', { waitMode }),
        () => ipcall.Server.bind('mem:wait-mode-invalid', { waitMode }),
        () => ipcall.connect('mem:nobody-needed', { waitMode }),
        () => ipcall.connectAsync('mem:nobody-needed', { waitMode }),
      ]
      for (const attempt of attempts) {
        const err = await caught(attempt)
        assert.ok(!(err instanceof ipcall.IpcallError))
        assert.match(err.message, /waitMode/)
        if (typeof waitMode === 'string') {
          assert.equal(err.name, 'TypeError', `${JSON.stringify(waitMode)}: ${err.message}`)
          assert.equal(err.code, 'ERR_INVALID_ARG_TYPE')
        } else {
          // Not a string at all: napi's conversion error, as for every option
          // of the wrong JavaScript type (maxMessageSize: 'x' is NumberExpected).
          assert.equal(err.code, 'StringExpected', err.message)
        }
      }
    }
  })
})

describe('connectionName', () => {
  test('is accepted and ignored by local transports', async () => {
    const server = ipcall.Server.bindUnique('unix', { connectionName: 'local server' })
    let seen
    const serving = (async () => {
      for await (const req of server) {
        seen = req.peer.name
        req.reply('ok')
      }
    })()
    const client = await ipcall.connectAsync(server.name, { connectionName: 'n'.repeat(256) })
    assert.equal((await client.call('x')).toString(), 'ok')
    assert.equal(seen, undefined)
    client.close()
    server.close()
    await serving
  })

  test('a bad one is a TypeError (ERR_INVALID_ARG_TYPE) naming the option', async () => {
    for (const connectionName of ['', 'n'.repeat(257), 'tab\there', 'nul\0']) {
      const attempts = [
        () => ipcall.Server.bindUnique('mem', { connectionName }),
        () => ipcall.connect('mem:nobody-needed', { connectionName }),
        () => ipcall.connectAsync('mem:nobody-needed', { connectionName }),
      ]
      for (const attempt of attempts) {
        const err = await caught(attempt)
        assert.equal(err.name, 'TypeError', `${JSON.stringify(connectionName)}: ${err.message}`)
        assert.equal(err.code, 'ERR_INVALID_ARG_TYPE')
        assert.match(err.message, /connectionName/)
      }
    }
  })
})
