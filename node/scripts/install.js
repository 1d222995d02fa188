#!/usr/bin/env node
// Makes sure the native addon for this platform sits next to index.js.
//
// - A packed tarball (`npm pack`) ships the built `ipcall.<platform>.node`:
//   nothing to do.
// - A checkout (`npm install /path/to/checkout/node`, or `npm install` inside
//   node/) has no binary until it is built: build it here with cargo from the
//   Rust workspace around this folder, so `require('ipcall')` works at once.
//
// IPCALL_SKIP_INSTALL_BUILD=1 skips the build (the Makefile sets it because it
// runs `napi build` itself right after `npm install`).
'use strict'

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const packageDir = path.join(__dirname, '..')

/** The platform suffix napi-rs uses in binary names, or null if unsupported. */
function platformSuffix() {
  if (process.platform !== 'linux' || process.arch !== 'x64') return null
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
  const glibc = report?.header?.glibcVersionRuntime
  return glibc ? 'linux-x64-gnu' : null
}

function fail(message) {
  console.error(`ipcall: ${message}`)
  process.exit(1)
}

function main() {
  const suffix = platformSuffix()
  if (suffix === null) {
    fail(`no build for ${process.platform}-${process.arch} (only x86_64 Linux with glibc is supported)`)
  }
  const binary = path.join(packageDir, `ipcall.${suffix}.node`)
  if (fs.existsSync(binary)) return
  if (process.env.IPCALL_SKIP_INSTALL_BUILD === '1') return

  const workspaceManifest = path.join(packageDir, '..', 'Cargo.toml')
  if (!fs.existsSync(path.join(packageDir, 'Cargo.toml')) || !fs.existsSync(workspaceManifest)) {
    fail(`${binary} is missing and there are no Rust sources to build it from; reinstall from a packed tarball or a full checkout`)
  }
  const cargo = process.env.CARGO || 'cargo'
  console.error('ipcall: building the native addon with cargo (release); this takes a minute the first time')
  const build = spawnSync(
    cargo,
    ['build', '--release', '-p', 'ipcall-node', '--manifest-path', workspaceManifest, '--message-format=json-render-diagnostics'],
    { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 256 << 20 },
  )
  if (build.error) fail(`could not run ${cargo}: ${build.error.message} (a Rust toolchain is needed to build from a checkout)`)
  if (build.status !== 0) fail(`cargo build failed with status ${build.status}`)

  // The library cargo produced, from its JSON messages (no guessing at target dirs).
  let library = null
  for (const line of build.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const message = JSON.parse(line)
    if (message.reason === 'compiler-artifact' && message.target?.name === 'ipcall_node') {
      library = message.filenames.find((f) => f.endsWith('.so')) ?? library
    }
  }
  if (library === null) fail('cargo finished but reported no ipcall_node library')
  // Copy to a temporary name first so that a half-written binary is never loaded.
  fs.copyFileSync(library, `${binary}.tmp`)
  fs.renameSync(`${binary}.tmp`, binary)
  console.error(`ipcall: built ${path.basename(binary)}`)
}

main()
