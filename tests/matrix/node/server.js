'use strict'
// The Node server of the cross-language matrix (tests/matrix/README.md):
//   node server.js KIND   binds a one-shot unique name of KIND, prints it, serves.
const path = require('node:path')
const zlib = require('node:zlib')
const ipcall = require(path.join(__dirname, '..', '..', '..', 'node'))

const EXIT_SKIP = 77

async function main() {
  let server
  try {
    server = ipcall.Server.bindUnique(process.argv[2], { oneShot: true })
  } catch (err) {
    if (err.code === 'INVALID_NAME') {
      process.stdout.write(`SKIP ${err.message}\n`)
      return EXIT_SKIP
    }
    throw err
  }
  process.stdout.write(`${server.name}\n`)
  let served = 0
  for (;;) {
    let req
    try {
      req = await server.recv()
    } catch (err) {
      if (err.code === 'CLOSED') break
      throw err
    }
    served++
    const data = req.data
    if (data.length >= 5 && data.subarray(0, 5).toString('latin1') === 'fail:') {
      req.fail(data.subarray(5))
    } else if (data.length === 7 && data.toString('latin1') === 'noreply') {
      req.close()
    } else {
      const reply = Buffer.allocUnsafe(data.length + 4)
      reply.writeUInt32LE(zlib.crc32(data), 0)
      data.copy(reply, 4)
      req.reply(reply)
    }
  }
  server.close()
  process.stdout.write(`served ${served}\n`)
  return 0
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (err) => {
    process.stdout.write(`FAIL ${err.code || ''} ${err.message}\n`)
    process.exitCode = 1
  },
)
