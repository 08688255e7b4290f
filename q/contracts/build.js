// Compiles UsageVerifier.sol and UsageSettlement.sol with the pinned solc from npm (package.json)
// and writes each contract's creation bytecode (NAME.bin, hex) and ABI (NAME.abi.json) beside it.
// With --check, writes nothing and fails unless the committed files are exactly what the
// compiler makes now. The settings are fixed here, metadata hash off, so the bytes depend only
// on the source and the compiler version.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const here = __dirname;
const names = ['UsageVerifier', 'UsageSettlement'];
const sources = {};
for (const name of names) {
  sources[`${name}.sol`] = { content: fs.readFileSync(path.join(here, `${name}.sol`), 'utf8') };
}
const input = {
  language: 'Solidity',
  sources,
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

const files = {};
const sizes = [];
for (const name of names) {
  const contract = output.contracts[`${name}.sol`][name];
  files[`${name}.bin`] = contract.evm.bytecode.object + '\n';
  files[`${name}.abi.json`] = JSON.stringify(contract.abi, null, 2) + '\n';
  sizes.push(`${name}.bin (${contract.evm.bytecode.object.length / 2} bytes)`);
}
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
console.log(`${check ? 'checked' : 'wrote'} ${sizes.join(', ')} and their ABIs with solc ${solc.version()}`);
