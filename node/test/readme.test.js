// The README's quick tour runs as written, prints what it says, and its
// process exits by itself.
'use strict'

const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { test } = require('node:test')
const { runToEnd } = require('./helpers.js')

const packageDir = path.join(__dirname, '..')

function quickTour() {
  const readme = fs.readFileSync(path.join(packageDir, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Quick tour'))
  const match = section.match(/```js\n([\s\S]*?)```/)
  assert.ok(match, 'README.md has a ```js block under "## Quick tour"')
  return match[1]
}

test('README quick tour', async () => {
  // Run from the package folder so that require('ipcall') resolves to this package.
  const result = await runToEnd(process.execPath, ['-e', quickTour()], { cwd: packageDir })
  assert.equal(result.stderr, '')
  assert.equal(result.code, 0)
  const lines = result.stdout.trim().split('\n')
  assert.match(lines[0], /^hello, world \(from pid \d+\)$/)
  assert.match(lines[1], /^hello, a \(from pid \d+\) \| hello, b \(from pid \d+\) \| hello, c \(from pid \d+\)$/)
  assert.equal(lines[2], 'REMOTE cannot divide by zero')
  assert.equal(lines.length, 3)
})
