// node-redis (the `redis` package) against cortex's RESP port, through the library's own API:
// the seed's flows, groups, XADD/XREADGROUP/XACK/XPENDING/XCLAIM/XAUTOCLAIM/XINFO, blocking
// reads, pipelines and transactions, over RESP2 and RESP3.
'use strict';
const assert = require('node:assert/strict');
const { createClient } = require('redis');
const { startCortex } = require('./cortex');

async function flows(client, tag) {
  const s = `tasks:${tag}`;
  // The seed's flow: XADD with its fields; XGROUP CREATE ... MKSTREAM then XREADGROUP.
  await client.xGroupCreate(s, 'workers', '$', { MKSTREAM: true });
  const id1 = await client.xAdd(s, '*', { type: 'task', from: 'harold', body: 'build X' });
  const id2 = await client.xAdd(s, '*', { type: 'task', from: 'pink', body: 'test Y' });
  assert.match(id1, /^\d+-\d+$/);
  assert.equal(await client.xLen(s), 2);
  const got = await client.xReadGroup('workers', 'w1', { key: s, id: '>' }, { COUNT: 10 });
  assert.equal(got.length, 1);
  assert.equal(got[0].name, s);
  assert.deepEqual(got[0].messages.map((m) => m.id), [id1, id2]);
  assert.equal(got[0].messages[0].message.body, 'build X');

  // Pending summary and range.
  const p = await client.xPending(s, 'workers');
  assert.equal(p.pending, 2);
  assert.equal(p.firstId, id1);
  assert.equal(p.consumers[0].name, 'w1');
  const range = await client.xPendingRange(s, 'workers', '-', '+', 10);
  assert.deepEqual(range.map((r) => r.id), [id1, id2]);
  assert.equal(range[0].deliveriesCounter, 1);

  // Claim one, autoclaim the rest.
  const claimed = await client.xClaim(s, 'workers', 'w2', 0, id1);
  assert.equal(claimed[0].id, id1);
  const auto = await client.xAutoClaim(s, 'workers', 'w2', 0, '0-0', { COUNT: 10 });
  assert.deepEqual(auto.messages.map((m) => m.id), [id1, id2]);
  assert.equal(auto.nextId, '0-0');

  // XACK both.
  assert.equal(await client.xAck(s, 'workers', [id1, id2]), 2);
  assert.equal((await client.xPending(s, 'workers')).pending, 0);

  // XINFO.
  const info = await client.xInfoStream(s);
  assert.equal(info.length, 2);
  assert.equal(info['last-generated-id'], id2);
  const groups = await client.xInfoGroups(s);
  assert.equal(groups[0].name, 'workers');
  assert.equal(groups[0]['last-delivered-id'], id2);
  const consumers = await client.xInfoConsumers(s, 'workers');
  assert.deepEqual(consumers.map((c) => c.name).sort(), ['w1', 'w2']);

  // A transaction: two appends and a read, atomically.
  const [a, b, len] = await client.multi()
    .xAdd(s, '*', { n: '1' })
    .xAdd(s, '*', { n: '2' })
    .xLen(s)
    .exec();
  assert.ok(a < b);
  assert.equal(len, 4);

  // A pipeline of 100 appends.
  const pipe = client.multi();
  for (let i = 0; i < 100; i++) pipe.xAdd(`${s}:pipe`, '*', { i: String(i) });
  const ids = await pipe.execAsPipeline();
  assert.equal(ids.length, 100);
  assert.equal(await client.xLen(`${s}:pipe`), 100);

  // A blocking read on its own connection, released by an append from this one. No waiting
  // for it to block first: `>` hands out whatever the group has not seen, so the read returns
  // the entry whether the append lands before or after it blocks.
  const blocker = client.duplicate();
  await blocker.connect();
  await client.xGroupCreate(`${s}:block`, 'g', '$', { MKSTREAM: true });
  const waiting = blocker.xReadGroup('g', 'c', { key: `${s}:block`, id: '>' }, { BLOCK: 10000 });
  const idb = await client.xAdd(`${s}:block`, '*', { wake: 'up' });
  const woke = await waiting;
  assert.equal(woke[0].messages[0].id, idb);
  await blocker.quit();

  // Trimming through the library's options.
  await client.xAdd(`${s}:trim`, '*', { a: '1' });
  await client.xAdd(`${s}:trim`, '*', { a: '2' }, { TRIM: { strategy: 'MAXLEN', threshold: 1 } });
  assert.equal(await client.xLen(`${s}:trim`), 1);
}

async function main() {
  const cortex = await startCortex();
  try {
    for (const RESP of [2, 3]) {
      const client = createClient({ socket: { host: '127.0.0.1', port: cortex.port }, RESP });
      client.on('error', (e) => { throw e; });
      await client.connect();
      assert.match(await client.info('server'), /redis_version:7\.4\./);
      await flows(client, `resp${RESP}`);
      await client.quit();
      console.log(`node-redis RESP${RESP}: stream flows passed`);
    }
  } finally {
    cortex.stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
