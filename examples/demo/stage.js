'use strict'
// The Node stage of `ipcall demo`: upper-cases an item's ASCII letters.
// Binds the one-shot name it is given in IPCALL_SERVER and serves until the
// orchestrator (its one client) goes away.
const path = require('node:path')
const ipcall = require(path.join(__dirname, '..', '..', 'node'))

async function main() {
  const server = ipcall.Server.bind(process.env.IPCALL_SERVER, { oneShot: true })
  for (;;) {
    let req
    try {
      req = await server.recv()
    } catch (err) {
      if (err.code === 'CLOSED') break
      throw err
    }
    const out = Buffer.from(req.data)
    for (let i = 0; i < out.length; i++) {
      if (out[i] >= 0x61 && out[i] <= 0x7a) out[i] -= 0x20
    }
    req.reply(out)
  }
  server.close()
}

main().catch((err) => {
  console.error(`node stage: ${err.code || ''} ${err.message}`)
  process.exitCode = 1
})
