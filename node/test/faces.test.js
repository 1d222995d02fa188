// How ipcall's objects look from JavaScript: errors are instances of the
// exported IpcallError class (in the main thread, in workers, from ESM), and
// console.log / util.inspect show a server's and client's name and a
// request's data, sender and state.
'use strict'

const assert = require('node:assert/strict')
const path = require('node:path')
const util = require('node:util')
const { Worker } = require('node:worker_threads')
const { describe, test } = require('node:test')
const { caught, ipcall, runToEnd } = require('./helpers.js')

const packageDir = path.join(__dirname, '..')

describe('IpcallError', () => {
  test('a thrown error is an IpcallError and an Error, and its stack names the class', () => {
    const err = (() => {
      try {
        ipcall.connect('no-kind-here')
      } catch (e) {
        return e
      }
    })()
    assert.ok(err instanceof ipcall.IpcallError)
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'INVALID_NAME')
    assert.equal(err.name, 'IpcallError')
    assert.match(err.stack, /^IpcallError: invalid name "no-kind-here"/)
    assert.match(String(err), /^IpcallError: /)
    assert.equal(Object.getPrototypeOf(ipcall.IpcallError), Error)
  })

  test('a rejected call carries an IpcallError too, with its details', async () => {
    const server = ipcall.Server.bindUnique('mem')
    const client = ipcall.connect(server.name)
    const call = caught(() => client.call('x'))
    const req = await server.recv()
    req.fail('nope')
    const err = await call
    assert.ok(err instanceof ipcall.IpcallError)
    assert.equal(err.code, 'REMOTE')
    assert.equal(err.payload.toString(), 'nope')
    client.close()
    server.close()
  })

  test('wrong arguments stay TypeErrors, not IpcallErrors', () => {
    const server = ipcall.Server.bindUnique('mem')
    const client = ipcall.connect(server.name)
    assert.throws(
      () => client.callSync(42),
      (err) => err instanceof TypeError && !(err instanceof ipcall.IpcallError),
    )
    client.close()
    server.close()
  })

  test('in a worker thread, errors are instances of that thread\'s IpcallError', async () => {
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads')
       const ipcall = require(${JSON.stringify(packageDir)})
       try { ipcall.connect('mem:nobody-binds-this-' + process.pid) } catch (err) {
         parentPort.postMessage([err instanceof ipcall.IpcallError, err instanceof Error, err.code])
       }`,
      { eval: true },
    )
    const [message] = await Promise.all([
      new Promise((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
      }),
      new Promise((resolve) => worker.once('exit', resolve)),
    ])
    assert.deepEqual(message, [true, true, 'NOT_FOUND'])
  })

  test('ES modules import it by name', async () => {
    const script = `import { IpcallError, connect } from 'ipcall'
      try { connect('bad') } catch (err) { console.log(err instanceof IpcallError, err.code) }`
    const result = await runToEnd(process.execPath, ['--input-type=module', '-e', script], {
      cwd: packageDir,
    })
    assert.equal(result.stderr, '')
    assert.equal(result.stdout, 'true INVALID_NAME\n')
  })
})

describe('util.inspect and console.log', () => {
  test('servers and clients show their name; requests their data, sender and state', async () => {
    const server = ipcall.Server.bindUnique('mem')
    const client = ipcall.connect(server.name)
    assert.equal(util.inspect(server), `Server { name: '${server.name}' }`)
    assert.equal(util.inspect(client), `Client { name: '${server.name}' }`)
    const call = client.call('hi')
    const req = await server.recv()
    const shown = util.inspect(req, { breakLength: Infinity })
    assert.equal(shown, `Request { data: <Buffer 68 69>, peer: { pid: ${process.pid}, uid: ${process.getuid()}, gid: ${process.getgid()} }, answered: false }`)
    req.reply('ok')
    assert.match(util.inspect(req, { breakLength: Infinity }), /answered: true/)
    assert.equal((await call).toString(), 'ok')
    // Nested deeper than the inspection depth, an object stays short.
    assert.equal(util.inspect({ a: { b: { c: server } } }, { depth: 1 }), '{ a: { b: [Object] } }')
    assert.equal(util.inspect([server], { depth: -1 }), '[Array]')
    client.close()
    server.close()
  })
})
