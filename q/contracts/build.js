// Compiles UsageVerifier.sol with the pinned solc from npm (package.json) and writes its creation
// bytecode (UsageVerifier.bin, hex) and ABI (UsageVerifier.abi.json) beside it.
// With --check, writes nothing and fails unless the committed files are exactly what the
// compiler makes now. The settings are fixed here, metadata hash off, so the bytes depend only
// on the source and the compiler version.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const here = __dirname;
const source = fs.readFileSync(path.join(here, 'UsageVerifier.sol'), 'utf8');
const input = {
  language: 'Solidity',
  sources: { 'UsageVerifier.sol': { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    metadata: { bytecodeHash: 'none', appendCBOR: false },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

const contract = output.contracts['UsageVerifier.sol'].UsageVerifier;
const files = {
  'UsageVerifier.bin': contract.evm.bytecode.object + '\n',
  'UsageVerifier.abi.json': JSON.stringify(contract.abi, null, 2) + '\n',
};
const check = process.argv.includes('--check');
let stale = [];
for (const [name, text] of Object.entries(files)) {
  const file = path.join(here, name);
  if (check) {
    const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    if (committed !== text) stale.push(name);
  } else {
    fs.writeFileSync(file, text);
  }
}
if (stale.length > 0) {
  console.error(`solc ${solc.version()} makes other bytes than the committed ${stale.join(', ')}: run node q/contracts/build.js and commit`);
  process.exit(1);
}
console.log(`${check ? 'checked' : 'wrote'} UsageVerifier.bin (${contract.evm.bytecode.object.length / 2} bytes) and UsageVerifier.abi.json with solc ${solc.version()}`);
