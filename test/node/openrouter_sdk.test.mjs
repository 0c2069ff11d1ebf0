// OpenRouter's own TypeScript SDK (@openrouter/sdk), unchanged, pointed at llmux (serverURL):
// the management API (apiKeys.create/list/get/update/delete), a created key's own record
// (apiKeys.getCurrentKeyMetadata), a streamed chat completion through the SDK followed at
// once by generations.getGeneration, and analytics.getUserActivity. The SDK validates every
// answer against OpenRouter's schema (zod) and throws on a missing or mistyped member, so a
// shape llmux gets wrong fails here; the values are then checked member by member, in the
// SDK's camelCase. Run by CTest with LLMUX and LLMUX_MOCK naming the built binaries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenRouter, HTTPClient } from '@openrouter/sdk';
import * as errors from '@openrouter/sdk/models/errors';

const LLMUX = process.env.LLMUX;
const MOCK = process.env.LLMUX_MOCK;
const ADMIN = 'sk-llmux-node-admin';
const STATIC = 'sk-llmux-node-static';
const MODEL = 'meta-llama/llama-3.1-8b-instruct';
// USD per million tokens: a prompt token costs 10 µ$, a completion token 20 µ$
const PRICE = { prompt: 10, completion: 20 };
const procs = [];
let dir;
let api;

const sha256 = (s) => createHash('sha256').update(s).digest('hex');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitHttp(url) {
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no answer from ${url}`);
}

before(async () => {
  assert.ok(LLMUX && MOCK, 'LLMUX and LLMUX_MOCK must name the binaries');
  dir = mkdtempSync(join(tmpdir(), 'llmux-node-or-'));
  const mockPort = await freePort();
  const port = await freePort();
  writeFileSync(join(dir, 'llmux.yaml'), `
listen: 127.0.0.1:${port}
workers: 2
providers:
  - name: mock
    base_url: http://127.0.0.1:${mockPort}/v1
models:
  - id: ${MODEL}
    context_length: 131072
    providers:
      - provider: mock
        model: llama-3.1-8b
        price: {prompt: ${PRICE.prompt}, completion: ${PRICE.completion}}
auth:
  keys:
    - name: static
      sha256: ${sha256(STATIC)}
admin:
  sha256: ${sha256(ADMIN)}
log: {access_log: off, level: error}
store: {path: ${join(dir, 'llmux.db')}, commit_interval: 50ms}
`);
  procs.push(spawn(MOCK, ['-l', `127.0.0.1:${mockPort}`], { stdio: 'ignore' }));
  procs.push(spawn(LLMUX, ['-c', join(dir, 'llmux.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] }));
  api = `http://127.0.0.1:${port}/api/v1`;
  await waitHttp(`http://127.0.0.1:${port}/healthz`);
});

after(() => {
  for (const p of procs) p.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// No retries: a 404 from /generation must not be papered over by the SDK's back-off.
const client = (apiKey, opts = {}) =>
  new OpenRouter({ apiKey, serverURL: api, retryConfig: { strategy: 'none' }, ...opts });

// A response the SDK's schema refuses is llmux's bug: name what the schema said.
const explain = (fn) => async () => {
  try {
    await fn();
  } catch (e) {
    if (e instanceof errors.ResponseValidationError) {
      throw new Error(`llmux's answer does not fit OpenRouter's schema: ${e.pretty()}\n${e.body}`);
    }
    throw e;
  }
};

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const today = () => new Date().toISOString().slice(0, 10);

// Every member of OpenRouter's Key, as the SDK hands it over.
function checkKey(k, want) {
  assert.match(k.hash, /^[0-9a-f]{64}$/);
  assert.equal(k.name, want.name);
  assert.equal(typeof k.label, 'string');
  assert.equal(k.disabled, want.disabled ?? false);
  assert.equal(k.limit, want.limit);
  assert.equal(k.limitReset, want.limitReset);
  assert.equal(k.usage, want.usage ?? 0);
  assert.equal(k.usageDaily, want.usage ?? 0);
  assert.equal(k.usageWeekly, want.usage ?? 0);
  assert.equal(k.usageMonthly, want.usage ?? 0);
  assert.equal(k.limitRemaining, want.limit === null ? null : want.limit - (want.usage ?? 0));
  assert.equal(k.includeByokInLimit, false);
  assert.equal(k.byokUsage, 0);
  assert.equal(k.byokUsageDaily, 0);
  assert.equal(k.byokUsageWeekly, 0);
  assert.equal(k.byokUsageMonthly, 0);
  assert.match(k.createdAt, ISO);
  assert.ok(k.updatedAt === null || ISO.test(k.updatedAt), `updatedAt ${k.updatedAt}`);
  assert.ok(k.expiresAt === null || k.expiresAt === undefined, `expiresAt ${k.expiresAt}`);
  assert.equal(k.creatorUserId, null);
  assert.equal(k.externalUser, null);
  assert.equal(typeof k.workspaceId, 'string');
}

test('management API through apiKeys, then the key itself: /key, a stream, /generation, /activity', explain(async () => {
  const admin = client(ADMIN);

  // create: the plaintext once, OpenRouter's Key beside it
  const created = await admin.apiKeys.create({
    requestBody: { name: 'sdk-team', limit: 5, limitReset: 'monthly' },
  });
  assert.match(created.key, /^sk-lx-v1-[0-9a-f]{64}$/);
  const hash = created.data.hash;
  assert.equal(hash, sha256(created.key), 'the hash is the SHA-256 of the key');
  checkKey(created.data, { name: 'sdk-team', limit: 5, limitReset: 'monthly' });

  // list and get
  const list = await admin.apiKeys.list();
  assert.ok(Array.isArray(list.data));
  const listed = list.data.find((k) => k.hash === hash);
  assert.ok(listed, 'the new key is listed');
  checkKey(listed, { name: 'sdk-team', limit: 5, limitReset: 'monthly' });
  assert.ok(!JSON.stringify(list).includes(created.key), 'the plaintext is shown once');
  const got = await admin.apiKeys.get({ hash });
  checkKey(got.data, { name: 'sdk-team', limit: 5, limitReset: 'monthly' });
  assert.equal(got.data.createdAt, created.data.createdAt);

  // update: name, limit and reset; disabled and enabled again
  const upd = await admin.apiKeys.update({
    hash,
    requestBody: { name: 'sdk-team-2', limit: 2.5, limitReset: 'daily' },
  });
  checkKey(upd.data, { name: 'sdk-team-2', limit: 2.5, limitReset: 'daily' });
  assert.match(upd.data.updatedAt, ISO);
  const off = await admin.apiKeys.update({ hash, requestBody: { disabled: true } });
  checkKey(off.data, { name: 'sdk-team-2', limit: 2.5, limitReset: 'daily', disabled: true });
  const on = await admin.apiKeys.update({ hash, requestBody: { disabled: false } });
  assert.equal(on.data.disabled, false);

  // the created key, in a second client: its own record
  const user = client(created.key);
  const cur = (await user.apiKeys.getCurrentKeyMetadata()).data;
  assert.equal(cur.label, got.data.label);
  assert.equal(cur.isManagementKey, false);
  assert.equal(cur.isProvisioningKey, false);
  assert.equal(cur.isFreeTier, false);
  assert.equal(cur.limit, 2.5);
  assert.equal(cur.limitRemaining, 2.5);
  assert.equal(cur.limitReset, 'daily');
  assert.equal(cur.usage, 0);
  assert.equal(cur.usageDaily, 0);
  assert.equal(cur.includeByokInLimit, false);
  assert.equal(cur.creatorUserId, null);
  assert.deepEqual(cur.allowedDataRegions, ['global']);
  assert.equal(cur.organizationId, null);
  assert.equal(cur.workspaceId, '');
  assert.deepEqual(cur.freeModelDailyRequests, { limit: -1, remaining: -1, used: 0 });
  assert.equal(cur.expiresAt, null);
  assert.equal(typeof cur.rateLimit.requests, 'number');
  assert.equal(typeof cur.rateLimit.interval, 'string');

  // a stream through the SDK; the response head names the generation
  let genId = null;
  const http = new HTTPClient();
  http.addHook('response', (res) => {
    const g = res.headers.get('x-generation-id');
    if (g) genId = g;
  });
  const streamer = client(created.key, { httpClient: http });
  const stream = await streamer.chat.send({
    chatRequest: {
      model: MODEL,
      stream: true,
      messages: [{ role: 'user', content: 'Hello' }],
    },
  });
  let text = '';
  let usage = null;
  let finish = null;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    assert.equal(c.model, MODEL);
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.delta?.content ?? '';
      if (ch.finishReason) finish = ch.finishReason;
    }
  }
  assert.ok(chunks > 1 && text.length > 0);
  assert.equal(finish, 'stop');
  assert.ok(usage && usage.promptTokens > 0 && usage.completionTokens > 0, 'usage chunk under /api/v1');
  assert.match(genId ?? '', /^gen-/);

  // right after the stream ended, no pause: the record is there
  const gen = (await user.generations.getGeneration({ id: genId })).data;
  assert.equal(gen.id, genId);
  assert.equal(gen.model, MODEL);
  assert.equal(gen.providerName, 'mock');
  assert.equal(gen.apiType, 'completions');
  assert.equal(gen.streamed, true);
  assert.equal(gen.cancelled, false);
  assert.equal(gen.finishReason, 'stop');
  assert.equal(gen.tokensPrompt, usage.promptTokens);
  assert.equal(gen.tokensCompletion, usage.completionTokens);
  assert.equal(gen.nativeTokensPrompt, usage.promptTokens);
  assert.equal(gen.nativeTokensCompletion, usage.completionTokens);
  const micros = usage.promptTokens * PRICE.prompt + usage.completionTokens * PRICE.completion;
  assert.equal(Math.round(gen.totalCost * 1e6), micros, `cost ${gen.totalCost}`);
  assert.equal(gen.usage, gen.totalCost);
  assert.equal(gen.isByok, false);
  assert.equal(gen.dataRegion, 'global');
  assert.match(gen.createdAt, ISO);
  assert.ok(gen.latency >= 0 && gen.generationTime >= 0);
  assert.equal(gen.providerResponses.length, 1);
  assert.equal(gen.providerResponses[0].providerName, 'mock');
  assert.equal(gen.providerResponses[0].status, 200);

  // another client key may not read it; an unknown id is a typed 404
  await assert.rejects(
    client(STATIC).generations.getGeneration({ id: genId }),
    (e) => e instanceof errors.NotFoundResponseError && e.error.code === 404,
  );
  await assert.rejects(
    user.generations.getGeneration({ id: 'gen-nope' }),
    (e) => e instanceof errors.NotFoundResponseError,
  );

  // the spend is the key's: /key and the management view agree with the generation
  const after1 = (await user.apiKeys.getCurrentKeyMetadata()).data;
  assert.equal(after1.usage, gen.totalCost);
  assert.equal(after1.usageDaily, gen.totalCost);
  assert.equal(Math.round(after1.limitRemaining * 1e6), 2500000 - micros);
  const viewed = (await admin.apiKeys.get({ hash })).data;
  assert.equal(viewed.usage, gen.totalCost);

  // activity for today: one row for the model and provider, this key's figures
  const act = await user.analytics.getUserActivity({ date: today() });
  assert.equal(act.data.length, 1, JSON.stringify(act.data));
  const row = act.data[0];
  assert.equal(row.date.slice(0, 10), today());
  assert.equal(row.model, MODEL);
  assert.equal(row.modelPermaslug, MODEL);
  assert.equal(row.providerName, 'mock');
  assert.equal(typeof row.endpointId, 'string');
  assert.equal(row.requests, 1);
  assert.equal(row.promptTokens, usage.promptTokens);
  assert.equal(row.completionTokens, usage.completionTokens);
  assert.equal(row.reasoningTokens, 0);
  assert.equal(row.usage, gen.totalCost);
  assert.equal(row.byokUsageInference, 0);
  // the management key sees it filtered by the key's hash; a malformed date is a 400
  const byHash = await admin.analytics.getUserActivity({ date: today(), apiKeyHash: hash });
  assert.equal(byHash.data.length, 1);
  assert.equal(byHash.data[0].requests, 1);
  await assert.rejects(
    user.analytics.getUserActivity({ date: '2026-13-01' }),
    (e) => e instanceof errors.BadRequestResponseError && e.error.code === 400,
  );

  // a client key may not manage keys; no key at all is a 401
  await assert.rejects(user.apiKeys.list(), (e) => e.statusCode === 403);
  await assert.rejects(
    client('sk-not-a-key').apiKeys.list(),
    (e) => e instanceof errors.UnauthorizedResponseError && e.error.code === 401,
  );

  // delete: gone from the API, refused on the request path
  const del = await admin.apiKeys.delete({ hash });
  assert.deepEqual(del, { deleted: true });
  await assert.rejects(
    admin.apiKeys.get({ hash }),
    (e) => e instanceof errors.NotFoundResponseError && e.error.code === 404,
  );
  await assert.rejects(
    admin.apiKeys.delete({ hash }),
    (e) => e instanceof errors.NotFoundResponseError,
  );
  await assert.rejects(
    user.apiKeys.getCurrentKeyMetadata(),
    (e) => e instanceof errors.UnauthorizedResponseError,
  );
  assert.ok(!(await admin.apiKeys.list()).data.some((k) => k.hash === hash));
}));

test('create refuses a bad body with a typed 400', explain(async () => {
  const admin = client(ADMIN);
  await assert.rejects(
    admin.apiKeys.create({ requestBody: { name: 'x', limit: -1 } }),
    (e) => e instanceof errors.BadRequestResponseError && e.error.code === 400 &&
      /limit/.test(e.error.message),
  );
  // a key without a limit: limit and limitRemaining null, limitReset null
  const k = await admin.apiKeys.create({ requestBody: { name: 'unlimited' } });
  checkKey(k.data, { name: 'unlimited', limit: null, limitReset: null });
  await admin.apiKeys.delete({ hash: k.data.hash });
}));
