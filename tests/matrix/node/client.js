'use strict'
// The Node client of the cross-language matrix (tests/matrix/README.md):
// runs the script against $IPCALL_SERVER.
const crypto = require('node:crypto')
const path = require('node:path')
const zlib = require('node:zlib')
const ipcall = require(path.join(__dirname, '..', '..', '..', 'node'))

const FIXED_SIZES = [0, 1 << 20, 16 << 20]
const MASK = (1n << 64n) - 1n

async function main() {
  const calls = Number(process.env.IPCALL_CALLS || '1000')
  const client = await ipcall.connectAsync(process.env.IPCALL_SERVER, { timeout: 10000 })
  let state = 0x2545f4914f6cdd1dn
  for (let i = 0; i < calls; i++) {
    state ^= (state << 13n) & MASK
    state ^= state >> 7n
    state ^= (state << 17n) & MASK
    const size = i < FIXED_SIZES.length ? FIXED_SIZES[i] : Number((state >> 8n) % (1n << (state % 21n)))
    const data = crypto.randomBytes(size)
    const reply = await client.call(data)
    if (reply.length !== size + 4 || reply.readUInt32LE(0) !== zlib.crc32(data) || !reply.subarray(4).equals(data)) {
      throw new Error(`call ${i} (${size} B): the reply (${reply.length} B) is not crc32 + the request`)
    }
  }
  const payload = Buffer.from(Array.from({ length: 256 }, (_, b) => b))
  try {
    await client.call(Buffer.concat([Buffer.from('fail:'), payload]))
    throw new Error('the fail request was answered')
  } catch (err) {
    if (err.code !== 'REMOTE' || !payload.equals(err.payload)) throw err
  }
  try {
    await client.call('noreply')
    throw new Error('the noreply request was answered')
  } catch (err) {
    if (err.code !== 'NO_REPLY') throw err
  }
  client.close()
  process.stdout.write(`ok ${calls}\n`)
}

main().catch((err) => {
  process.stdout.write(`FAIL ${err.code || ''} ${err.message}\n`)
  process.exitCode = 1
})
