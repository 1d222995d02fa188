// The new-user path, for real: in an empty folder, `npm install` of the
// packed tarball and of the checkout's node/ folder give a working
// require('ipcall') and import ipcall from 'ipcall'.
//
// Installing from a copy of the checkout without the binary makes the install
// script build it with cargo: about a minute cold, seconds warm.
'use strict'

const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { describe, test, before, after } = require('node:test')
const { repoRoot, runToEnd } = require('./helpers.js')

const packageDir = path.join(__dirname, '..')
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const npmEnv = {
  ...process.env,
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
  npm_config_loglevel: 'error',
}
// Not inherited from `make`: a new user's install must build when it has to.
delete npmEnv.IPCALL_SKIP_INSTALL_BUILD

/** A round trip through the installed package, as a CommonJS script and as an ES module. */
const cjsCheck = `
const ipcall = require('ipcall')
const server = ipcall.Server.bindUnique('mem')
const client = ipcall.connect(server.name)
const reply = client.call('from cjs')
server.recv().then(async (req) => {
  req.reply(Buffer.concat([Buffer.from('ok: '), req.data]))
  console.log((await reply).toString(), require.resolve('ipcall'))
  client.close()
  server.close()
})`
const esmCheck = `
import ipcall from 'ipcall'
import { Server, connect } from 'ipcall'
const server = Server.bindUnique('mem')
const client = connect(server.name)
const reply = client.call('from esm')
const req = await server.recv()
req.reply(Buffer.concat([Buffer.from('ok: '), req.data]))
console.log((await reply).toString(), typeof ipcall.connectAsync)
client.close()
server.close()`

async function npmIn(dir, args) {
  const result = await runToEnd(npm, args, { cwd: dir, env: npmEnv })
  assert.equal(result.code, 0, `npm ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`)
  return result
}

/** Runs both checks in `projectDir`, where ipcall has been installed. */
async function assertWorks(projectDir) {
  fs.writeFileSync(path.join(projectDir, 'check.cjs'), cjsCheck)
  fs.writeFileSync(path.join(projectDir, 'check.mjs'), esmCheck)
  const cjs = await runToEnd(process.execPath, ['check.cjs'], { cwd: projectDir })
  assert.equal(cjs.stderr, '')
  assert.equal(cjs.code, 0)
  assert.match(cjs.stdout, /^ok: from cjs .*index\.js\n$/)
  const esm = await runToEnd(process.execPath, ['check.mjs'], { cwd: projectDir })
  assert.equal(esm.stderr, '')
  assert.equal(esm.code, 0)
  assert.equal(esm.stdout, 'ok: from esm function\n')
}

function emptyProject(label) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ipcall-${label}-`))
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `try-${label}`, version: '1.0.0', private: true }))
  return dir
}

describe('npm install in an empty folder', () => {
  const made = []
  after(() => made.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })))

  test('of the tarball from npm pack: it ships the built addon and works', async () => {
    const packDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipcall-pack-'))
    made.push(packDir)
    const packed = await npmIn(packageDir, ['pack', '--json', '--pack-destination', packDir])
    const [info] = JSON.parse(packed.stdout)
    const files = info.files.map((f) => f.path).sort()
    assert.deepEqual(files, ['README.md', 'index.d.ts', 'index.js', 'ipcall.linux-x64-gnu.node', 'package.json', 'scripts/install.js'])
    const project = emptyProject('tarball')
    made.push(project)
    await npmIn(project, ['install', path.join(packDir, info.filename)])
    assert.ok(!fs.lstatSync(path.join(project, 'node_modules', 'ipcall')).isSymbolicLink(), 'a real copy, not a link')
    await assertWorks(project)
  })

  test('of the checkout folder (node/), as built by make', async () => {
    const project = emptyProject('folder')
    made.push(project)
    await npmIn(project, ['install', packageDir])
    await assertWorks(project)
  })

  test('of a copy of the checkout without the addon: the install script builds it with cargo', async () => {
    // The tracked files as they are in this working tree (no binary, no
    // target/, no node_modules), copied to a fixed place with their
    // timestamps, building into a target dir kept between runs: the first run
    // is a cold release build, later ones find cargo's work done. `make
    // test-node-install` (IPCALL_TEST_INSTALL_COLD=1) uses a fresh target dir.
    const base = path.join(repoRoot, 'target', 'node-install-test')
    const copy = path.join(base, 'checkout')
    fs.rmSync(copy, { recursive: true, force: true })
    const tracked = execFileSync('git', ['ls-files', '-z'], { cwd: repoRoot, encoding: 'utf8' }).split('\0').filter(Boolean)
    for (const file of tracked) {
      const source = path.join(repoRoot, file)
      if (!fs.existsSync(source)) continue // deleted in the working tree
      const dest = path.join(copy, file)
      fs.mkdirSync(path.dirname(dest), { recursive: true })
      fs.copyFileSync(source, dest)
      const { atime, mtime } = fs.statSync(source)
      fs.utimesSync(dest, atime, mtime)
    }
    assert.ok(!fs.existsSync(path.join(copy, 'node', 'ipcall.linux-x64-gnu.node')))
    const cold = process.env.IPCALL_TEST_INSTALL_COLD === '1'
    const targetDir = cold ? fs.mkdtempSync(path.join(os.tmpdir(), 'ipcall-cold-target-')) : path.join(base, 'target')
    if (cold) made.push(targetDir)
    const project = emptyProject('source')
    made.push(project)
    const result = await runToEnd(npm, ['install', path.join(copy, 'node')], {
      cwd: project,
      env: { ...npmEnv, CARGO_TARGET_DIR: targetDir, npm_config_foreground_scripts: 'true' },
    })
    assert.equal(result.code, 0, `npm install failed:\n${result.stdout}\n${result.stderr}`)
    assert.match(result.stderr, /ipcall: built ipcall\.linux-x64-gnu\.node/)
    assert.ok(fs.existsSync(path.join(copy, 'node', 'ipcall.linux-x64-gnu.node')), 'the install script built the addon')
    await assertWorks(project)
  })
})
