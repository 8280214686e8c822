// ioredis's own stream command tests (upstream/: its test/functional/commands/x*.ts and the
// helpers they import, from github.com/redis/ioredis at dfd5428, MIT, see upstream/LICENSE;
// the npm package has no tests) against cortex's RESP port, with the published ioredis
// (pinned in ../package.json) as the client. Every file runs under RESP2 and both RESP3
// reply mappings, as upstream runs it; Redis 8's commands included (force-version.js).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { startCortex } = require('../cortex');

async function main() {
  const { port, stop } = await startCortex();
  let status = 1;
  try {
    const mocha = path.join(__dirname, '..', 'node_modules', '.bin', 'mocha');
    const r = spawnSync(mocha, ['--require', 'ts-node/register', '--require',
      path.join(__dirname, 'force-version.js'), '--reporter', 'dot', '--timeout', '20000',
      path.join(__dirname, 'upstream', 'test', 'functional', 'commands', 'x*.ts')], {
      stdio: 'inherit', cwd: __dirname,
      env: { ...process.env, CORTEX_RESP_PORT: String(port), TS_NODE_TRANSPILE_ONLY: 'true',
        TS_NODE_PROJECT: path.join(__dirname, 'tsconfig.json') } });
    status = r.status === null ? 1 : r.status;
  } finally {
    stop();
  }
  process.exit(status);
}

main().catch((e) => { console.error(e); process.exit(1); });
