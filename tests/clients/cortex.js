// Starts the real cortex binary on loopback ports and resolves with its RESP port.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

function startCortex() {
  const target = process.env.CARGO_TARGET_DIR || path.join(__dirname, '..', '..', 'target');
  const bin = process.env.CORTEX_BIN || path.join(target, 'debug', 'cortex');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cortex-node-'));
  const child = spawn(bin, ['serve', '--data-dir', dir, '--resp', '127.0.0.1:0',
    '--quic', '127.0.0.1:0', '--http', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: 'warn' } });
  const stop = () => { child.kill('SIGKILL'); fs.rmSync(dir, { recursive: true, force: true }); };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { stop(); reject(new Error('cortex did not start in 20 s')); }, 20000);
    child.on('exit', (code) => reject(new Error(`cortex exited with ${code}`)));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const m = line.match(/^cortex: RESP listening on (.*):(\d+)$/);
      if (m) { clearTimeout(timer); resolve({ port: Number(m[2]), stop }); }
    });
  });
}

module.exports = { startCortex };
