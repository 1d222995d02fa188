#!/usr/bin/env node
// Packs the npm release of ipcall the way napi-rs projects ship prebuilt
// addons (`make dist`):
//
//   ipcall-<version>.tgz                     index.js, index.d.ts, README, LICENSE;
//                                            no install script; the addon comes from
//   ipcall-linux-x64-gnu-<version>.tgz       the built addon alone, restricted by
//                                            os/cpu/libc, named in the main package's
//                                            optionalDependencies
//
// npm installs the platform package that matches the machine and skips the
// others; the generated index.js loads `ipcall-<platform>` when no addon sits
// next to it. Nothing runs at install time, so `--ignore-scripts` (and npm's
// coming refusal of unapproved install scripts) changes nothing. Building
// from source stays possible, as an explicit choice: `npm install` of the
// checkout's node/ folder runs scripts/install.js, which builds with cargo.
//
//   node scripts/pack-dist.js ADDON OUT_DIR
//
// ADDON is the built `ipcall.linux-x64-gnu.node` (stripped by the caller);
// LICENSE is taken from the repository root. Prints the tarballs' paths.
'use strict'

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const packageDir = path.join(__dirname, '..')
const repoRoot = path.join(packageDir, '..')

/** The napi-rs platform name of the one target this build ships. */
const PLATFORM = { suffix: 'linux-x64-gnu', os: ['linux'], cpu: ['x64'], libc: ['glibc'] }

function fail(message) {
  console.error(`pack-dist: ${message}`)
  process.exit(1)
}

function writeJson(file, value) {
  fs.writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`)
}

/** `npm pack` of `dir` into `outDir`; returns the tarball's path. */
function pack(dir, outDir) {
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', outDir], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' },
  })
  const [info] = JSON.parse(out)
  return path.join(outDir, info.filename)
}

function main() {
  const [addon, outArg] = process.argv.slice(2)
  if (!addon || !outArg) fail('usage: pack-dist.js ADDON OUT_DIR')
  if (!fs.existsSync(addon)) fail(`${addon} does not exist (make node-build)`)
  const outDir = path.resolve(outArg)
  fs.mkdirSync(outDir, { recursive: true })
  const main = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8'))
  const { version } = main
  const platformName = `${main.name}-${PLATFORM.suffix}`
  const binaryName = `${main.napi.binaryName}.${PLATFORM.suffix}.node`
  const license = path.join(repoRoot, 'LICENSE')

  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'ipcall-pack-dist-'))
  try {
    // The platform package: the addon and nothing to run.
    const platformDir = path.join(stage, PLATFORM.suffix)
    fs.mkdirSync(platformDir)
    fs.copyFileSync(addon, path.join(platformDir, binaryName))
    fs.copyFileSync(license, path.join(platformDir, 'LICENSE'))
    fs.writeFileSync(
      path.join(platformDir, 'README.md'),
      `# ${platformName}\n\nThe prebuilt native addon of [ipcall](https://www.npmjs.com/package/${main.name}) ` +
        `for ${PLATFORM.os[0]} ${PLATFORM.cpu[0]} (${PLATFORM.libc[0]}). Install \`${main.name}\`, not this package: ` +
        `npm picks this one as an optional dependency on matching machines.\n`,
    )
    writeJson(path.join(platformDir, 'package.json'), {
      name: platformName,
      version,
      description: `The ${PLATFORM.suffix} native addon of ipcall`,
      license: main.license,
      main: binaryName,
      files: [binaryName],
      os: PLATFORM.os,
      cpu: PLATFORM.cpu,
      libc: PLATFORM.libc,
      engines: main.engines,
    })

    // The main package: the loader and types, no binary, no scripts.
    const mainDir = path.join(stage, 'main')
    fs.mkdirSync(mainDir)
    for (const file of ['index.js', 'index.d.ts', 'README.md']) {
      fs.copyFileSync(path.join(packageDir, file), path.join(mainDir, file))
    }
    fs.copyFileSync(license, path.join(mainDir, 'LICENSE'))
    const released = { ...main }
    delete released.scripts
    delete released.devDependencies
    released.files = ['index.js', 'index.d.ts', 'README.md']
    released.optionalDependencies = { [platformName]: version }
    writeJson(path.join(mainDir, 'package.json'), released)

    for (const dir of [platformDir, mainDir]) console.log(pack(dir, outDir))
  } finally {
    fs.rmSync(stage, { recursive: true, force: true })
  }
}

main()
