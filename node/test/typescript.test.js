// index.d.ts type-checks a typed use of every part of the API (tsc --noEmit),
// and rejects a misuse, so the declarations are neither broken nor vacuous.
'use strict'

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')
const { runToEnd } = require('./helpers.js')

const packageDir = path.join(__dirname, '..')
const tsc = path.join(packageDir, 'node_modules', 'typescript', 'bin', 'tsc')

test('tsc --noEmit accepts examples/typed.ts', async () => {
  const result = await runToEnd(process.execPath, [tsc, '--noEmit', '-p', path.join(packageDir, 'tsconfig.json')])
  assert.equal(result.stdout + result.stderr, '')
  assert.equal(result.code, 0)
})

test('tsc --noEmit rejects a wrong use (a number as a message, a missing method)', async () => {
  const dir = fs.mkdtempSync(path.join(packageDir, 'node_modules', '.ipcall-tsc-'))
  try {
    fs.writeFileSync(
      path.join(dir, 'wrong.ts'),
      "import { connect } from 'ipcall'\nconst c = connect('mem:x')\nc.call(42)\nc.send('x')\n",
    )
    const config = {
      compilerOptions: { module: 'node16', moduleResolution: 'node16', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [path.join(packageDir, 'node_modules', '@types')] },
      files: ['wrong.ts'],
    }
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(config))
    const result = await runToEnd(process.execPath, [tsc, '--noEmit', '-p', path.join(dir, 'tsconfig.json')])
    assert.notEqual(result.code, 0)
    assert.match(result.stdout, /wrong\.ts\(3,8\): error TS2345/)
    assert.match(result.stdout, /wrong\.ts\(4,3\): error TS2339/)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
