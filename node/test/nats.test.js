// nats: from Node against a real nats-server this file starts on a free
// loopback port: Node server and client, a Node client against the Rust peer
// in another process (and its SIGKILL), errors, hidden credentials.
'use strict'

const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const { after, before, describe, test } = require('node:test')
const { caught, ipcall, peerPath, peerSkipReason, runToEnd } = require('./helpers.js')

const repoRoot = path.join(__dirname, '..', '..')

/** $IPCALL_NATS_SERVER, the repository's .venv, or PATH. Missing: the suite fails (never a skip). */
function natsServerBinary() {
  const candidates = [process.env.IPCALL_NATS_SERVER, path.join(repoRoot, '.venv', 'bin', 'nats-server')]
  const which = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' })
  if (which.status === 0) candidates.push(which.stdout.trim())
  const found = candidates.find((c) => c && fs.existsSync(c))
  if (!found) throw new Error('nats-server not found: run `make nats-server` or set IPCALL_NATS_SERVER')
  return found
}

/** Starts nats-server on 127.0.0.1 with a port it picks; resolves { child, addr, dir }. */
async function startNats(extra = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipcall-nats-node-'))
  const child = spawn(natsServerBinary(), ['-a', '127.0.0.1', '-p', '-1', '--ports_file_dir', dir, ...extra], {
    stdio: 'ignore',
  })
  const file = path.join(dir, `nats-server_${child.pid}.ports`)
  for (let i = 0; i < 1000; i += 1) {
    if (fs.existsSync(file)) {
      try {
        const addr = JSON.parse(fs.readFileSync(file, 'utf8')).nats[0].split('://')[1]
        return { child, addr, dir }
      } catch {
        // Written but not complete yet.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  child.kill('SIGKILL')
  throw new Error('nats-server did not start within 20 s')
}

function stopNats(node) {
  node.child.kill('SIGKILL')
  fs.rmSync(node.dir, { recursive: true, force: true })
}

let counter = 0
const subject = (tag) => `test.node.${tag}.${process.pid}.${counter++}`

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

describe('nats: from Node', () => {
  let node
  before(async () => {
    node = await startNats()
  })
  after(() => stopNats(node))

  test('a Node server and client: echo, chunks, REMOTE, NO_REPLY, DISCONNECTED', async () => {
    const server = ipcall.Server.bind(`nats://${node.addr}/${subject('basic')}`)
    const serving = serveScript(server)
    const client = await ipcall.connectAsync(server.name)
    const big = Buffer.alloc(3 << 20, 9)
    const replies = await Promise.all([client.call('hello'), client.call(big)])
    assert.equal(replies[0].toString(), 'hello')
    assert.ok(replies[1].equals(big))
    const remote = await caught(() => client.call('fail:boom'))
    assert.equal(remote.code, 'REMOTE')
    assert.equal(remote.payload.toString(), 'boom')
    assert.equal((await caught(() => client.call('noreply'))).code, 'NO_REPLY')
    server.close()
    assert.equal(await serving, 4)
    assert.equal((await caught(() => client.call('anyone?'))).code, 'DISCONNECTED')
    client.close()
  })

  test('ping and serverStats over nats: answered by the server itself', async () => {
    const server = ipcall.Server.bind(`nats://${node.addr}/${subject('stats')}`)
    const client = await ipcall.connectAsync(server.name)
    // Nobody receives yet: the server's NATS task answers.
    assert.ok((await client.ping({ timeout: 20000 })) > 0)
    assert.equal((await client.serverStats({ timeout: 20000 })).calls, 0)
    const serving = serveScript(server)
    assert.equal((await client.call('hello')).toString(), 'hello')
    const stats = await client.serverStats({ timeout: 20000 })
    assert.deepEqual([stats.calls, stats.replies, stats.bytesIn, stats.bytesOut], [1, 1, 5, 5])
    assert.equal(server.stats().calls, 1)
    server.close()
    await serving
    assert.equal((await caught(() => client.ping({ timeout: 20000 }))).code, 'DISCONNECTED')
    client.close()
  })

  test("a call's timeout is the request's deadline over nats: too; a plain call has null", async () => {
    const server = ipcall.Server.bind(`nats://${node.addr}/${subject('deadline')}`)
    const seen = (async () => {
      const deadlines = []
      for await (const req of server) {
        const now = performance.now()
        deadlines.push(req.deadline === null ? null : req.deadline >= now && req.deadline <= now + 60000)
        req.reply('ok')
      }
      return deadlines
    })()
    const client = await ipcall.connectAsync(server.name)
    await client.call('timed', { timeout: 60000 })
    await client.call('plain')
    client.close()
    server.close()
    assert.deepEqual(await seen, [true, null])
  })

  test("an aborted call aborts its acknowledged request's req.signal over nats:", async () => {
    // Only a call its server acknowledged can be cancelled over nats (the
    // ack, 10 ms after arrival, names the instance): the signal aborts once
    // that may have happened; an attempt whose ack had not arrived yet
    // cannot cancel, so the wait grows and the attempt repeats (bounded).
    const server = ipcall.Server.bind(`nats://${node.addr}/${subject('cancel')}`)
    const client = await ipcall.connectAsync(server.name)
    let cancelled = false
    for (let attempt = 1; attempt <= 10 && !cancelled; attempt += 1) {
      const controller = new AbortController()
      const call = client.call('slow', { signal: controller.signal })
      const req = await server.recv({ timeout: 30000 })
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt))
      controller.abort()
      await assert.rejects(call, { name: 'AbortError', code: 'ABORT_ERR' })
      cancelled = await new Promise((resolve) => {
        if (req.signal.aborted) return resolve(true)
        const timer = setTimeout(() => resolve(false), 2000)
        req.signal.addEventListener('abort', () => {
          clearTimeout(timer)
          resolve(true)
        })
      })
      assert.equal(req.cancelled, cancelled)
      req.reply('late')
    }
    assert.ok(cancelled, "no attempt's cancel reached the server")
    const next = client.call('next')
    const req = await server.recv({ timeout: 30000 })
    assert.equal(req.signal.aborted, false)
    req.reply('ok')
    assert.equal((await next).toString(), 'ok')
    client.close()
    server.close()
  })

  test('a for-await server and clients in this process: 2,000 calls in flight, a timeout, replies matched by id', async () => {
    const server = ipcall.Server.bind(`nats://${node.addr}/${subject('loop')}`)
    const held = []
    const serving = (async () => {
      for await (const req of server) {
        if (req.data.toString() === 'hold') held.push(req)
        else req.reply(Buffer.concat([Buffer.from('re:'), req.data]))
      }
    })()
    const clients = [await ipcall.connectAsync(server.name), await ipcall.connectAsync(server.name)]
    const timedOut = caught(() => clients[0].call('hold', { timeout: 50 }))
    const replies = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => clients[i % 2].call(String(i))),
    )
    replies.forEach((reply, i) => assert.equal(reply.toString(), `re:${i}`))
    assert.equal((await timedOut).code, 'TIMEOUT')
    // The held request reached the server, unless its 50 ms deadline passed
    // first (on a loaded machine): a server drops a request whose caller
    // gave up before it was received. A late answer to it is discarded, and
    // the client that timed out keeps working.
    assert.ok(held.length <= 1, `held ${held.length}`)
    for (const req of held) req.reply('late')
    assert.equal((await clients[0].call('after')).toString(), 're:after')
    server.close()
    await serving
    for (const client of clients) client.close()
  })

  test('a process whose nats: calls are answered exits by itself', async () => {
    const script = `const ipcall = require(${JSON.stringify(require.resolve('ipcall'))})
      const server = ipcall.Server.bind('nats://${node.addr}/${subject('exit')}')
      server.recv().then((req) => req.reply('pong'))
      ipcall.connectAsync(server.name).then(async (client) => {
        console.log((await client.call('ping')).toString())
        server.close()
      })`
    const result = await runToEnd(process.execPath, ['-e', script], { timeout: 60000 })
    assert.equal(result.signal, null, 'the child had to be killed: something kept it alive')
    assert.equal(result.stderr, '')
    assert.equal(result.stdout, 'pong\n')
    assert.equal(result.code, 0)
  })

  test("the peer is the caller's NATS connection: natsClientId and name", async () => {
    const server = ipcall.Server.bind(`nats://${node.addr}/${subject('peer')}`)
    const peers = []
    const serving = (async () => {
      for await (const req of server) {
        peers.push(req.peer)
        req.reply('')
      }
    })()
    const a = await ipcall.connectAsync(server.name)
    const b = await ipcall.connectAsync(server.name)
    for (const client of [a, b, a]) await client.call('who')
    server.close()
    await serving
    a.close()
    b.close()
    assert.equal(peers.length, 3)
    for (const peer of peers) {
      // NATS tells nothing of the sender's process or user.
      assert.equal(peer.pid, undefined)
      assert.equal(peer.uid, undefined)
      assert.equal(typeof peer.natsClientId, 'number')
      assert.equal(peer.name, `ipcall client (pid ${process.pid})`)
    }
    // One id per connection.
    assert.equal(peers[0].natsClientId, peers[2].natsClientId)
    assert.notEqual(peers[0].natsClientId, peers[1].natsClientId)
  })

  test('other transports tell no NATS identity', async () => {
    const server = ipcall.Server.bindUnique('unix')
    const client = await ipcall.connectAsync(server.name)
    const call = client.call('x')
    const req = await server.recv()
    assert.equal(req.peer.natsClientId, undefined)
    assert.equal(req.peer.name, undefined)
    assert.equal(req.peer.pid, process.pid)
    req.reply('')
    await call
    client.close()
    server.close()
  })

  test('NOT_FOUND for a subject nobody serves', async () => {
    assert.equal((await caught(() => ipcall.connect(`nats://${node.addr}/${subject('nobody')}`))).code, 'NOT_FOUND')
  })

  test('a Node client and a Rust server process; SIGKILL fails the pending call with DISCONNECTED', { skip: peerSkipReason() }, async () => {
    const name = `nats://${node.addr}/${subject('rust')}`
    const child = spawn(peerPath, ['serve', name], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    try {
      const printed = await new Promise((resolve, reject) => {
        readline.createInterface({ input: child.stdout }).once('line', resolve)
        child.once('exit', () => reject(new Error('peer serve exited early')))
      })
      assert.equal(printed.trim(), name)
      const client = await ipcall.connectAsync(name, { timeout: 10000 })
      assert.equal((await client.call('from node')).toString(), 'from node')
      // The Rust peer drops "noreply": but first hold a call open across the kill.
      child.kill('SIGKILL')
      await exited
      assert.equal((await caught(() => client.call('anyone?'))).code, 'DISCONNECTED')
      client.close()
    } finally {
      child.kill('SIGKILL')
    }
  })

  test('a Node client\'s connectionName is what a Rust server process sees as peer_name()', { skip: peerSkipReason() }, async () => {
    const name = `nats://${node.addr}/${subject('conn-name')}`
    const child = spawn(peerPath, ['serve', name], { stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      const printed = await new Promise((resolve, reject) => {
        readline.createInterface({ input: child.stdout }).once('line', resolve)
        child.once('exit', () => reject(new Error('peer serve exited early')))
      })
      assert.equal(printed.trim(), name)
      const named = await ipcall.connectAsync(name, { timeout: 10000, connectionName: 'node billing ✓' })
      assert.equal((await named.call('peer-name')).toString(), 'node billing ✓')
      named.close()
      const unnamed = await ipcall.connectAsync(name, { timeout: 10000 })
      assert.equal((await unnamed.call('peer-name')).toString(), `ipcall client (pid ${process.pid})`)
      unnamed.close()
    } finally {
      child.kill('SIGKILL')
    }
  })

  test('a server\'s connectionName is accepted over nats:', async () => {
    const server = ipcall.Server.bind(`nats://${node.addr}/${subject('server-name')}`, { connectionName: 'node server' })
    const serving = serveScript(server)
    const client = await ipcall.connectAsync(server.name, { connectionName: 'node client' })
    assert.equal((await client.call('hi')).toString(), 'hi')
    client.close()
    server.close()
    await serving
  })

  test('credentials never show', async () => {
    const locked = await startNats(['--user', 'nd', '--pass', 'swordfish-pw'])
    try {
      const subj = subject('creds')
      const server = ipcall.Server.bind(`nats://nd:swordfish-pw@${locked.addr}/${subj}`)
      assert.equal(server.name, `nats://${locked.addr}/${subj}`)
      const serving = serveScript(server)
      const client = ipcall.connect(`nats://nd:swordfish-pw@${locked.addr}/${subj}`)
      assert.equal((await client.call('x')).toString(), 'x')
      const denied = await caught(() => ipcall.connect(`nats://nd:wrong-pw@${locked.addr}/${subj}`))
      assert.equal(denied.code, 'PERMISSION_DENIED')
      for (const err of [denied, await caught(() => ipcall.connect('nats://nd:swordfish-pw@h:0/x'))]) {
        assert.ok(!String(err.message).includes('swordfish') && !String(err.message).includes('wrong-pw'), err.message)
      }
      client.close()
      server.close()
      await serving
    } finally {
      stopNats(locked)
    }
  })
})
