// Every error code of DESIGN §2, triggered through the real API and asserted.
// Codes that only a socket transport can produce run on unix: and are
// skipped, with the reason printed, while it is not in this build.
'use strict'

const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { describe, test } = require('node:test')
const { caught, ipcall, runToEnd } = require('./helpers.js')

const unixSkip = ipcall.availableKinds().includes('unix')
  ? false
  : 'needs unix:, which is not available in this build of ipcall yet'

/** Asserts `err` is an ipcall error: an IpcallError (an Error) with `code` and a message. */
function assertCode(err, code) {
  assert.ok(err instanceof Error, `expected an Error, got ${err}`)
  assert.ok(err instanceof ipcall.IpcallError, `expected an IpcallError, got ${err}`)
  assert.equal(err.name, 'IpcallError')
  assert.equal(err.code, code, `${err.message}`)
  assert.ok(err.message.length > 0)
}

function memPair(options) {
  const server = ipcall.Server.bindUnique('mem', options)
  return { server, client: ipcall.connect(server.name) }
}

describe('error codes', () => {
  test('the codes are the core\'s table, and this file triggers every one', () => {
    const codes = ipcall.errorCodes()
    assert.equal(new Set(codes).size, codes.length)
    assert.ok(codes.includes('DISCONNECTED') && codes.includes('IO'))
    // Each code of the core's table (ErrorKind::all) is asserted below by a
    // test that triggers it; a kind added to the core fails here until one does.
    const source = fs.readFileSync(__filename, 'utf8')
    const asserted = new Set([...source.matchAll(/assertCode\(.*?, '([A-Z_]+)'\)/g)].map((m) => m[1]))
    assert.deepEqual([...asserted].filter((c) => !codes.includes(c)), [], 'codes the core does not have')
    assert.deepEqual(codes.filter((c) => !asserted.has(c)), [], 'codes no test triggers')
  })

  test('DISCONNECTED: calls still queued when the server closes fail at once', async () => {
    const { server, client } = memPair()
    const pending = [caught(() => client.call('a')), caught(() => client.call('b'))]
    server.close()
    for (const err of await Promise.all(pending)) assertCode(err, 'DISCONNECTED')
    assertCode(await caught(() => client.call('after')), 'DISCONNECTED')
    client.close()
  })

  test('NO_REPLY: a request closed (or dropped) unanswered', async () => {
    const { server, client } = memPair()
    const call = caught(() => client.call('ignore me'))
    const req = await server.recv()
    req.close()
    assert.equal(req.answered, true)
    req.close() // harmless twice
    assertCode(await call, 'NO_REPLY')
    client.close()
    server.close()
  })

  test('NO_REPLY: a request garbage-collected unanswered', async () => {
    // In a child with --expose-gc, so collection can be forced.
    const script = `
      const ipcall = require(${JSON.stringify(require.resolve('ipcall'))})
      const server = ipcall.Server.bindUnique('mem')
      const client = ipcall.connect(server.name)
      let settled = null
      client.call('forget me').then(() => (settled = 'replied'), (err) => (settled = err.code))
      ;(async () => {
        await server.recv() // received, then unreachable: never answered
        for (let i = 0; i < 1000 && settled === null; i++) {
          globalThis.gc()
          await new Promise((resolve) => setImmediate(resolve))
        }
        console.log(settled)
        client.close()
        server.close()
      })()`
    const result = await runToEnd(process.execPath, ['--expose-gc', '-e', script])
    assert.equal(result.stderr, '')
    assert.equal(result.stdout.trim(), 'NO_REPLY')
  })

  test('REMOTE: req.fail(payload) rejects the call with that payload, byte for byte', async () => {
    const { server, client } = memPair()
    const payload = Buffer.from([0, 1, 2, 255, 0])
    const calls = [caught(() => client.call('text')), caught(() => client.call('binary'))]
    ;(await server.recv()).fail('boom')
    ;(await server.recv()).fail(payload)
    const [text, binary] = await Promise.all(calls)
    assertCode(text, 'REMOTE')
    assert.ok(Buffer.isBuffer(text.payload))
    assert.equal(text.payload.toString(), 'boom')
    assertCode(binary, 'REMOTE')
    assert.deepEqual(binary.payload, payload)
    client.close()
    server.close()
  })

  test('TIMEOUT: call, callSync and recv give up; a late reply is discarded', async () => {
    const { server, client } = memPair()
    const call = caught(() => client.call('slow', { timeout: 5 }))
    const req = await server.recv()
    assertCode(await call, 'TIMEOUT')
    req.reply('late') // discarded, never delivered to the next call
    const next = client.call('next')
    const nextReq = await server.recv()
    nextReq.reply('fresh')
    assert.equal((await next).toString(), 'fresh')
    assertCode(await caught(() => client.callSync('unanswered', { timeout: 5 })), 'TIMEOUT')
    ;(await server.recv()).close()
    assertCode(await caught(() => server.recv({ timeout: 5 })), 'TIMEOUT')
    client.close()
    server.close()
  })

  test('CLOSED: recv on a closed server; calls on (and in flight at) a closed client', async () => {
    const { server, client } = memPair()
    const inFlight = caught(() => client.call('pending at close'))
    const req = await server.recv()
    client.close()
    assertCode(await inFlight, 'CLOSED')
    assertCode(await caught(() => client.call('after close')), 'CLOSED')
    assertCode(await caught(() => client.callSync('after close')), 'CLOSED')
    client.close() // harmless twice
    req.reply('nobody listens')
    server.close()
    assertCode(await caught(() => server.recv()), 'CLOSED')
    server.close() // harmless twice
  })

  test('TOO_LARGE: a request over the server limit, over the client limit, a reply over the caller limit', async () => {
    const { server, client } = memPair({ maxMessageSize: 8 })
    const big = await caught(() => client.call(Buffer.alloc(9)))
    assertCode(big, 'TOO_LARGE')
    assert.equal(big.size, 9)
    assert.equal(big.max, 8)
    assertCode(await caught(() => client.callSync(Buffer.alloc(9))), 'TOO_LARGE')
    client.close()
    server.close()

    const roomy = ipcall.Server.bindUnique('mem')
    const small = ipcall.connect(roomy.name, { maxMessageSize: 4 })
    assertCode(await caught(() => small.call('12345')), 'TOO_LARGE')
    const call = caught(() => small.call('1234'))
    const req = await roomy.recv()
    const tooBig = await caught(() => req.reply('a reply of 21 bytes..'))
    assertCode(tooBig, 'TOO_LARGE')
    assert.equal(tooBig.max, 4)
    // Nothing truncated: the caller learns there was no reply.
    assertCode(await call, 'NO_REPLY')
    small.close()
    roomy.close()
  })

  test('ADDR_IN_USE: binding a name a live server holds', async () => {
    const server = ipcall.Server.bindUnique('mem')
    assertCode(await caught(() => ipcall.Server.bind(server.name)), 'ADDR_IN_USE')
    server.close()
    ipcall.Server.bind(server.name).close() // free again once closed
  })

  test('NOT_FOUND: connecting to a name nobody bound, at once or after waiting', async () => {
    assertCode(await caught(() => ipcall.connect(`mem:nobody-${process.pid}`)), 'NOT_FOUND')
    // Waiting for a server that never comes still says "nobody is there".
    assertCode(await caught(() => ipcall.connectAsync(`mem:never-bound-${process.pid}`, { timeout: 5 })), 'NOT_FOUND')
  })

  test('INVALID_NAME: names and kinds that do not parse', async () => {
    for (const name of ['', 'no-kind', 'carrier-pigeon:x', 'mem:', 'unix:', 'mem:bad\nname']) {
      assertCode(await caught(() => ipcall.Server.bind(name)), 'INVALID_NAME')
      assertCode(await caught(() => ipcall.connect(name)), 'INVALID_NAME')
    }
    assertCode(await caught(() => ipcall.Server.bindUnique('carrier-pigeon')), 'INVALID_NAME')
    assertCode(await caught(() => ipcall.connectAsync('no-kind')), 'INVALID_NAME')
  })

  test('PERMISSION_DENIED: binding where the OS refuses (even root may not create files in /sys)', { skip: unixSkip }, async () => {
    assertCode(await caught(() => ipcall.Server.bind(`unix:/sys/ipcall-test-${process.pid}.sock`)), 'PERMISSION_DENIED')
  })

  test('IO: an OS error with no closer kind (a path through a regular file: ENOTDIR)', { skip: unixSkip }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipcall-io-'))
    try {
      const file = path.join(dir, 'regular-file')
      fs.writeFileSync(file, '')
      assertCode(await caught(() => ipcall.Server.bind(`unix:${file}/x.sock`)), 'IO')
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('PROTOCOL: a "server" that answers the handshake with garbage', { skip: unixSkip }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipcall-proto-'))
    const socketPath = path.join(dir, 'garbage.sock')
    const garbage = net.createServer((socket) => {
      socket.on('error', () => {})
      socket.write(Buffer.alloc(64, 0xa5))
    })
    await new Promise((resolve) => garbage.listen(socketPath, resolve))
    // connectAsync: the handshake runs off this thread, so this thread's fake
    // server can answer it.
    const err = await caught(async () => {
      const client = await ipcall.connectAsync(`unix:${socketPath}`)
      try {
        await client.call('hello?', { timeout: 10000 })
      } finally {
        client.close()
      }
    })
    garbage.close()
    fs.rmSync(dir, { recursive: true, force: true })
    assertCode(err, 'PROTOCOL')
  })

  test('argument errors are TypeErrors (ERR_INVALID_ARG_TYPE), outside the closed set', async () => {
    const { server, client } = memPair()
    for (const bad of [() => client.call('x', { timeout: -1 }), () => client.callSync('x', { timeout: NaN }),
      () => ipcall.Server.bindUnique('mem', { maxMessageSize: 0 }), () => ipcall.Server.bindUnique('mem', { maxMessageSize: 1.5 }),
      () => ipcall.connect(server.name, { timeout: 10 }), () => client.call({ not: 'bytes' }), () => server.recv({ timeout: -5 })]) {
      const err = await caught(bad)
      assert.equal(err.name, 'TypeError', err.message)
      assert.equal(err.code, 'ERR_INVALID_ARG_TYPE')
    }
    const call = client.call('answer twice')
    const req = await server.recv()
    req.reply('once')
    const twice = await caught(() => req.reply('twice'))
    assert.equal(twice.name, 'TypeError')
    assert.equal((await call).toString(), 'once')
    client.close()
    server.close()
  })
})
