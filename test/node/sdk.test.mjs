// The official OpenAI SDK for Node, unchanged, pointed at llmux (baseURL), in front of the
// project's mock server: streaming and non-streaming calls, and the SDK's typed errors.
// Run by CTest with LLMUX and LLMUX_MOCK naming the built binaries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';

const LLMUX = process.env.LLMUX;
const MOCK = process.env.LLMUX_MOCK;
const KEY = 'sk-llmux-node-test';
const MODEL = 'meta-llama/llama-3.1-8b-instruct';
const procs = [];
let dir;
let base;

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
  dir = mkdtempSync(join(tmpdir(), 'llmux-node-'));
  const mockPort = await freePort();
  const port = await freePort();
  const digest = createHash('sha256').update(KEY).digest('hex');
  writeFileSync(join(dir, 'llmux.yaml'), `
listen: 127.0.0.1:${port}
workers: 1
providers:
  - name: mock
    base_url: http://127.0.0.1:${mockPort}/v1
models:
  - id: ${MODEL}
    context_length: 131072
    providers:
      - provider: mock
        model: llama-3.1-8b
        price: {prompt: 0.05, completion: 0.08}
auth:
  keys:
    - name: node
      sha256: ${digest}
log: {access_log: off, level: error}
store: {path: ${join(dir, 'llmux.db')}}
`);
  procs.push(spawn(MOCK, ['-l', `127.0.0.1:${mockPort}`], { stdio: 'ignore' }));
  procs.push(spawn(LLMUX, ['-c', join(dir, 'llmux.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] }));
  base = `http://127.0.0.1:${port}`;
  await waitHttp(`${base}/healthz`);
});

after(() => {
  for (const p of procs) p.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const client = (opts = {}) => new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 0, ...opts });

test('non-streaming chat completion', async () => {
  const r = await client().chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Hello' }],
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.ok(r.choices[0].message.content.length > 0);
  assert.ok(r.usage.total_tokens > 0);
});

test('streaming chat completion, usage only when asked', async () => {
  const stream = await client().chat.completions.create({
    model: MODEL,
    stream: true,
    messages: [{ role: 'user', content: 'Hello' }],
    mock: { chunks: 12, interval_ms: 2 },
  });
  let text = '';
  let chunks = 0;
  let usage = null;
  let finish = null;
  for await (const c of stream) {
    chunks++;
    assert.equal(c.model, MODEL);
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.delta?.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.ok(chunks >= 12);
  assert.ok(text.length > 0);
  assert.equal(finish, 'stop');
  assert.equal(usage, null, 'no usage chunk unless the client asked');

  const withUsage = await client().chat.completions.create({
    model: MODEL,
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Hello' }],
  });
  let last = null;
  for await (const c of withUsage) last = c;
  assert.ok(last.usage && last.usage.total_tokens > 0);
  assert.deepEqual(last.choices, []);
});

test('a stream the client aborts', async () => {
  const ac = new AbortController();
  const stream = await client().chat.completions.create(
    { model: MODEL, stream: true, messages: [], mock: { chunks: 1000, interval_ms: 5 } },
    { signal: ac.signal },
  );
  let n = 0;
  const t0 = Date.now();
  // the SDK ends the iteration quietly on its own abort
  for await (const c of stream) {
    assert.equal(c.object, 'chat.completion.chunk');
    if (++n === 3) ac.abort();
  }
  // chunks that arrived in the same read as the third may still be yielded after the abort
  // (seen on a loaded machine); the stream must end long before its 1,000 chunks
  assert.ok(n >= 3 && n < 1000, `${n} chunks after the abort`);
  assert.ok(Date.now() - t0 < 4000, 'the abort ended the stream long before its 5 s');
  // llmux still serves afterwards
  const r = await client().chat.completions.create({ model: MODEL, messages: [] });
  assert.equal(r.object, 'chat.completion');
});

test('typed errors: 401, 404, 429, 400', async () => {
  // OpenAI's envelope: code a string (or null), param, type, as the SDK reads them
  await assert.rejects(
    client({ apiKey: 'sk-wrong' }).chat.completions.create({ model: MODEL, messages: [] }),
    (e) => e instanceof OpenAI.AuthenticationError && e.code === 'invalid_api_key',
  );
  await assert.rejects(
    client().chat.completions.create({ model: 'no/such-model', messages: [] }),
    (e) => e instanceof OpenAI.NotFoundError && /no\/such-model/.test(e.message) &&
      e.code === 'model_not_found' && e.param === 'model' && e.type === 'invalid_request_error',
  );
  await assert.rejects(
    client().chat.completions.create({ model: MODEL, messages: [] }, { headers: { 'x-mock-status': '429' } }),
    (e) => e instanceof OpenAI.RateLimitError && e.code === 'rate_limit_exceeded',
  );
  await assert.rejects(
    client().chat.completions.create({ model: MODEL, stream: 'yes', messages: [] }),
    OpenAI.BadRequestError,
  );
});

test('models.retrieve, the id with its slash', async () => {
  const m = await client().models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
  assert.equal(m.object, 'model');
  assert.equal(m.owned_by, 'meta-llama');
  await assert.rejects(
    client().models.retrieve('no/such-model'),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found',
  );
});

test('under /api/v1 a stream ends with its usage chunk, asked for or not', async () => {
  const or = client({ baseURL: `${base}/api/v1` });
  const stream = await or.chat.completions.create({
    model: MODEL,
    stream: true,
    messages: [{ role: 'user', content: 'Hello' }],
  });
  let last = null;
  for await (const c of stream) last = c;
  assert.ok(last.usage && last.usage.total_tokens > 0);
  // and its errors are OpenRouter's: the status as a number in error.code
  await assert.rejects(
    or.chat.completions.create({ model: 'no/such-model', messages: [] }),
    (e) => e instanceof OpenAI.NotFoundError && e.error?.code === 404 &&
      e.error?.metadata?.error_type === 'not_found',
  );
});

test('models list', async () => {
  const list = await client().models.list();
  const ids = [];
  for await (const m of list) ids.push(m.id);
  assert.deepEqual(ids, [MODEL]);
});
