// The official OpenAI SDK for Node, unchanged, talking HTTPS to a TLS listen entry of llmux.
// The certificates are generated now by llmux-test-pki (LLMUX_PKI; test/unit/tls/pki.h), into
// a temporary directory. The SDK trusts the test CA only through NODE_EXTRA_CA_CERTS, which
// Node reads at start-up: the calls run in a child node process started with it, and this
// process (without it) checks that the SDK refuses the unknown CA.
// Run by CTest with LLMUX, LLMUX_MOCK and LLMUX_PKI naming the built binaries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

const LLMUX = process.env.LLMUX;
const MOCK = process.env.LLMUX_MOCK;
const PKI = process.env.LLMUX_PKI;
const MODEL = 'meta-llama/llama-3.1-8b-instruct';
const here = dirname(fileURLToPath(import.meta.url));
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

async function waitListening(port) {
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((resolve) => {
      const c = connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

before(async () => {
  assert.ok(LLMUX && MOCK && PKI, 'LLMUX, LLMUX_MOCK and LLMUX_PKI must name the binaries');
  dir = mkdtempSync(join(tmpdir(), 'llmux-node-tls-'));
  execFileSync(PKI, [dir], { stdio: 'inherit', timeout: 30000 });
  const mockPort = await freePort();
  const port = await freePort();
  writeFileSync(join(dir, 'llmux.yaml'), `
listen:
  - address: 127.0.0.1:${port}
    tls: {cert: ${dir}/server.pem, key: ${dir}/server.key}
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
auth: none
log: {access_log: off, level: error}
store: {path: ${join(dir, 'llmux.db')}}
`);
  procs.push(spawn(MOCK, ['-l', `127.0.0.1:${mockPort}`], { stdio: 'ignore' }));
  procs.push(spawn(LLMUX, ['-c', join(dir, 'llmux.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitListening(mockPort);
  await waitListening(port);
  // the certificate is for localhost (DNS name): Node verifies the name it connects to
  base = `https://localhost:${port}/v1`;
});

after(() => {
  for (const p of procs) p.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Runs <code> (an ES module body with `client` and `MODEL` in scope) in a child node that
// trusts the test CA; resolves with what it printed as JSON.
function withCA(code) {
  const src = `
import OpenAI from 'openai';
const MODEL = ${JSON.stringify(MODEL)};
const client = new OpenAI({ apiKey: 'unused', baseURL: ${JSON.stringify(base)}, maxRetries: 0 });
const out = await (async () => { ${code} })();
process.stdout.write(JSON.stringify(out));
`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', src], {
      cwd: here, // resolves 'openai' from test/node/node_modules
      env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30000,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('close', (status) => {
      if (status !== 0) reject(new Error(`child node failed (${status}): ${err}`));
      else resolve(JSON.parse(out));
    });
  });
}

test('without the CA, the SDK refuses the certificate', async () => {
  const client = new OpenAI({ apiKey: 'unused', baseURL: base, maxRetries: 0 });
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: [] }),
    OpenAI.APIConnectionError,
  );
});

test('non-streaming chat completion over TLS', async () => {
  const r = await withCA(`
    return await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Hello' }],
    });`);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.ok(r.choices[0].message.content.length > 0);
  assert.ok(r.usage.total_tokens > 0);
});

test('streaming chat completion over TLS, every chunk through', async () => {
  const r = await withCA(`
    const full = await client.chat.completions.create({
      model: MODEL, messages: [], mock: { chunks: 200, chunk_size: 64 },
    });
    const stream = await client.chat.completions.create({
      model: MODEL, stream: true, messages: [], mock: { chunks: 200, chunk_size: 64 },
    });
    let text = '', chunks = 0, finish = null;
    for await (const c of stream) {
      chunks++;
      for (const ch of c.choices) {
        text += ch.delta?.content ?? '';
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    return { chunks, finish, same: text === full.choices[0].message.content, len: text.length };`);
  assert.ok(r.chunks >= 200);
  assert.equal(r.finish, 'stop');
  assert.equal(r.len, 200 * 64);
  assert.ok(r.same, 'the streamed text equals the non-streamed one');
});

test('models list and a typed error over TLS', async () => {
  const r = await withCA(`
    const ids = [];
    for await (const m of await client.models.list()) ids.push(m.id);
    let notFound = false;
    try {
      await client.chat.completions.create({ model: 'no/such-model', messages: [] });
    } catch (e) {
      notFound = e instanceof OpenAI.NotFoundError;
    }
    return { ids, notFound };`);
  assert.deepEqual(r.ids, [MODEL]);
  assert.ok(r.notFound);
});
