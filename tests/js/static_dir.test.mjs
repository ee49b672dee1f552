// Development mode: SWITCHYARD_STATIC_DIR serves a frontend at `/`, `/` redirecting to
// `/index.html`, while the API keeps working beside it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withServer, getJson } from './lib/server.mjs';

test('a static frontend directory is served at / with the API beside it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-static-'));
  fs.writeFileSync(path.join(dir, 'index.html'), '<h1>frust</h1>');
  fs.mkdirSync(path.join(dir, 'js'));
  fs.writeFileSync(path.join(dir, 'js', 'app.js'), 'console.log(1)');
  try {
    await withServer({ env: { SWITCHYARD_STATIC_DIR: dir }, name: 'static' }, async (server) => {
      const root = await fetch(`${server.url}/`, { redirect: 'manual' });
      assert.ok([301, 302, 303, 307, 308].includes(root.status), `redirect, got ${root.status}`);
      assert.equal(root.headers.get('location'), '/index.html');
      const index = await fetch(`${server.url}/index.html`);
      assert.equal(index.status, 200);
      assert.equal(await index.text(), '<h1>frust</h1>');
      const js = await fetch(`${server.url}/js/app.js`);
      assert.equal(await js.text(), 'console.log(1)');
      assert.equal((await fetch(`${server.url}/nope.html`)).status, 404);
      assert.equal(typeof (await getJson(server, '/api')).version, 'string');
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('without a static directory nothing is served at /', async () => {
  await withServer({ name: 'no-static' }, async (server) => {
    assert.equal((await fetch(`${server.url}/index.html`)).status, 404);
  });
});

test('/version.json (the stats page\'s "Frontend version"): the directory\'s file, else the original --dev\'s shape', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-static-'));
  fs.writeFileSync(path.join(dir, 'index.html'), '<h1>frust</h1>');
  try {
    await withServer({ env: { SWITCHYARD_STATIC_DIR: dir }, name: 'static-version' }, async (server) => {
      const generated = await getJson(server, '/version.json');
      assert.deepEqual(Object.keys(generated).sort(), ['commit_sha', 'timestamp']);
      assert.match(generated.commit_sha, /^\d+$/);
      assert.match(generated.timestamp, /^\d+$/);
      const built = { commit_sha: 'abc123', timestamp: '2020-11-02T10:00:00' };
      fs.writeFileSync(path.join(dir, 'version.json'), JSON.stringify(built));
      assert.deepEqual(await getJson(server, '/version.json'), built);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
