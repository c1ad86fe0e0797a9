#!/usr/bin/env node
// Compile contracts/src with the npm `solc` package and write contracts/artifacts/<Name>.json.
//
//   node contracts/build.js           compile and (re)write the artifacts
//   node contracts/build.js --check   compile in memory; exit 1 naming every artifact that is
//                                     missing or differs from the file on disk, 0 when all match
//
// The output is deterministic: source keys are repository-relative (no absolute paths reach the
// metadata), artifact keys are in a fixed order, JSON is 2-space indented with a trailing newline.
'use strict';

const fs = require('fs');
const path = require('path');

const CONTRACTS_DIR = __dirname;
const REPO_ROOT = path.resolve(CONTRACTS_DIR, '..');
const SRC_DIR = path.join(CONTRACTS_DIR, 'src');
const ARTIFACTS_DIR = path.join(CONTRACTS_DIR, 'artifacts');
const NODE_MODULES = path.join(REPO_ROOT, 'node_modules');

const solc = require(path.join(NODE_MODULES, 'solc'));

const EXPECTED_SOLC = '0.8.30';
// anvil 1.7 defaults to the latest hardfork; cancun keeps the bytecode deployable on every
// chain xStocks live on (no Prague/Osaka opcodes are needed).
const EVM_VERSION = 'cancun';

// Artifact name -> source unit that defines it.
const OZ_PROXY = '@openzeppelin/contracts/proxy/transparent/TransparentUpgradeableProxy.sol';
const OZ_ADMIN = '@openzeppelin/contracts/proxy/transparent/ProxyAdmin.sol';
const ARTIFACTS = [
  ['XStock', 'src/XStock.sol'],
  ['XStockFactory', 'src/XStockFactory.sol'],
  ['SanctionsList', 'src/SanctionsList.sol'],
  ['PlainToken', 'src/PlainToken.sol'],
  ['LegacyToken', 'src/LegacyToken.sol'],
  ['MoveBatch', 'src/MoveBatch.sol'],
  ['ViewReader', 'src/ViewReader.sol'],
  ['TransparentUpgradeableProxy', OZ_PROXY],
  ['ProxyAdmin', OZ_ADMIN],
];

function listSolidity(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listSolidity(full));
    else if (entry.isFile() && entry.name.endsWith('.sol')) out.push(full);
  }
  return out;
}

function toUnitName(file) {
  return path.relative(CONTRACTS_DIR, file).split(path.sep).join('/');
}

function readPackageSource(unit) {
  // Only resolve inside node_modules, never outside it.
  const full = path.resolve(NODE_MODULES, unit);
  if (!full.startsWith(NODE_MODULES + path.sep)) throw new Error(`import escapes node_modules: ${unit}`);
  return fs.readFileSync(full, 'utf8');
}

function findImports(unit) {
  try {
    if (unit.startsWith('@openzeppelin/')) return { contents: readPackageSource(unit) };
    if (unit.startsWith('src/')) return { contents: fs.readFileSync(path.join(CONTRACTS_DIR, unit), 'utf8') };
    return { error: `import not found: ${unit}` };
  } catch (err) {
    return { error: `cannot read ${unit}: ${err.message}` };
  }
}

function buildInput() {
  const sources = {};
  const files = listSolidity(SRC_DIR).map(toUnitName).sort();
  for (const unit of files) {
    sources[unit] = { content: fs.readFileSync(path.join(CONTRACTS_DIR, unit), 'utf8') };
  }
  for (const unit of [OZ_PROXY, OZ_ADMIN]) sources[unit] = { content: readPackageSource(unit) };
  return {
    language: 'Solidity',
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: EVM_VERSION,
      outputSelection: {
        '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
      },
    },
  };
}

function compile() {
  const version = solc.version();
  if (!version.startsWith(EXPECTED_SOLC + '+')) {
    throw new Error(`solc ${EXPECTED_SOLC} expected, found ${version}`);
  }
  const output = JSON.parse(solc.compile(JSON.stringify(buildInput()), { import: findImports }));
  const diagnostics = output.errors || [];
  const errors = diagnostics.filter((d) => d.severity === 'error');
  for (const d of diagnostics) {
    process.stderr.write((d.formattedMessage || d.message).trimEnd() + '\n');
  }
  if (errors.length > 0) {
    throw new Error(`compilation failed with ${errors.length} error(s)`);
  }
  const artifacts = {};
  for (const [name, unit] of ARTIFACTS) {
    const contract = output.contracts && output.contracts[unit] && output.contracts[unit][name];
    if (!contract) throw new Error(`compiler output lacks ${unit}:${name}`);
    const bytecode = contract.evm.bytecode.object;
    if (/__\$[0-9a-f]{34}\$__/.test(bytecode)) throw new Error(`${name} needs library linking`);
    const artifact = {
      contractName: name,
      abi: contract.abi,
      bytecode: '0x' + bytecode,
      deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
    };
    artifacts[name] = JSON.stringify(artifact, null, 2) + '\n';
  }
  return artifacts;
}

function main() {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(`usage: node contracts/build.js [--check]\n`);
    return 2;
  }
  const check = args.includes('--check');
  let artifacts;
  try {
    artifacts = compile();
  } catch (err) {
    process.stderr.write(`build failed: ${err.message}\n`);
    return 1;
  }
  if (check) {
    const stale = [];
    for (const [name, text] of Object.entries(artifacts)) {
      const file = path.join(ARTIFACTS_DIR, `${name}.json`);
      let onDisk = null;
      try {
        onDisk = fs.readFileSync(file, 'utf8');
      } catch (_) {
        // missing file: reported below
      }
      if (onDisk !== text) stale.push(`${path.relative(REPO_ROOT, file)}${onDisk === null ? ' (missing)' : ''}`);
    }
    if (stale.length > 0) {
      for (const s of stale) process.stderr.write(`artifact out of date: ${s}\n`);
      process.stderr.write('run `npm run build:contracts` and commit the result\n');
      return 1;
    }
    process.stdout.write(`contract artifacts up to date (${Object.keys(artifacts).length})\n`);
    return 0;
  }
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  for (const [name, text] of Object.entries(artifacts)) {
    const file = path.join(ARTIFACTS_DIR, `${name}.json`);
    let onDisk = null;
    try {
      onDisk = fs.readFileSync(file, 'utf8');
    } catch (_) {
      // new file
    }
    if (onDisk !== text) fs.writeFileSync(file, text);
    process.stdout.write(`${onDisk === text ? 'unchanged' : 'wrote'} ${path.relative(REPO_ROOT, file)}\n`);
  }
  return 0;
}

process.exitCode = main();
