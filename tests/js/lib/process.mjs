// The one launcher of the tests' child processes: `switchyard all` (lib/server.mjs), the
// cluster's `switchyard <role>` processes and its nats-server nodes (lib/cluster.mjs). A handle
// spawns a new child on each launch, keeps the tail of its output, tracks its exit, and can wait
// for it to answer /healthz, stop it cleanly, kill it, or freeze it.

import { spawn } from 'node:child_process';

// The contract is 10 s. The override exists only to look past a shutdown bug while debugging.
const STOP_TIMEOUT_MS = Number(process.env.SWITCHYARD_E2E_STOP_TIMEOUT_MS) || 10_000;

/** Every child still running; killed hard if this test process exits anyway. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves {code, signal} once `child` has exited (at once if it already has). */
export function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Spawns a short-lived helper that is killed with the test process if still running. */
export function spawnTracked(command, args, options) {
  const child = spawn(command, args, options);
  live.add(child);
  child.on('exit', () => live.delete(child));
  return child;
}

/**
 * A process handle named `name`, not started: {name, child, exit ({code, signal} once the
 * current child ended), logs (the last `logLines` output lines), generation, paused, tail(n),
 * alive(), watchLogs(fn), launch(), waitHealthy(), stop(), kill(), pause(), resume()}.
 */
export function processHandle(name, { logLines = 400, tailLines = 80 } = {}) {
  const handle = { name, child: null, exit: null, logs: [], generation: 0, paused: false };
  // Every log line as it arrives (the kept tail is short): `watchLogs(fn)` returns an unwatch.
  const watchers = new Set();
  handle.watchLogs = (fn) => {
    watchers.add(fn);
    return () => watchers.delete(fn);
  };
  const push = (line) => {
    for (const watch of watchers) watch(line);
    handle.logs.push(line);
    if (handle.logs.length > logLines) handle.logs.splice(0, handle.logs.length - logLines);
  };
  handle.tail = (n = tailLines) => handle.logs.slice(-n).join('\n');
  handle.alive = () => Boolean(handle.child) && !handle.exit;

  /** Spawns `command args` with `env` (default: this process's); `banner` heads its log. */
  handle.launch = (command, args, { env, banner = `starting: ${command} ${args.join(' ')}` } = {}) => {
    handle.exit = null;
    handle.generation += 1;
    const gen = handle.generation;
    handle.logs.push(`=== ${name} #${gen} ${banner}`);
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    handle.child = child;
    live.add(child);
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop();
        for (const line of lines) push(line);
      });
    }
    child.on('error', (err) => handle.logs.push(`=== spawn error: ${err.message}`));
    child.on('exit', (code, signal) => {
      live.delete(child);
      handle.logs.push(`=== ${name} #${gen} exited code=${code} signal=${signal}`);
      if (handle.child === child) {
        handle.exit = { code, signal };
        handle.paused = false;
      }
    });
    return child;
  };

  /**
   * Waits until GET `url` answers 200 (polling every `intervalMs`); throws, with the log tail,
   * if the process exits first or after `timeoutMs` (then the process is SIGKILLed). `what`
   * names it in the errors.
   */
  handle.waitHealthy = async (url, { timeoutMs, intervalMs = 50, what = name }) => {
    const child = handle.child;
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (handle.exit) {
        throw new Error(`${what} exited before becoming ready (${JSON.stringify(handle.exit)})\n${handle.tail()}`);
      }
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = err.cause?.code ?? err.message;
      }
      await sleep(intervalMs);
    }
    child.kill('SIGKILL');
    throw new Error(`${what} not ready within ${timeoutMs} ms (last: ${last})\n${handle.tail()}`);
  };

  /** SIGTERM; asserts a clean exit (code 0) within 10 s. */
  handle.stop = async () => {
    const child = handle.child;
    if (!child) return handle.exit;
    if (handle.exit) {
      throw new Error(`${name} had already exited (${JSON.stringify(handle.exit)}) before stop()\n${handle.tail()}`);
    }
    handle.logs.push(`=== ${name}: test sends SIGTERM`);
    const done = exited(child);
    child.kill('SIGTERM');
    let timer;
    const result = await Promise.race([done, new Promise((r) => { timer = setTimeout(() => r(null), STOP_TIMEOUT_MS); })]);
    clearTimeout(timer);
    if (result === null) {
      child.kill('SIGKILL');
      await done;
      throw new Error(`${name} did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM\n${handle.tail()}`);
    }
    if (result.code !== 0) {
      throw new Error(`${name} exited with ${JSON.stringify(result)} after SIGTERM (expected code 0)\n${handle.tail()}`);
    }
    return result;
  };

  /** Sends `signal` (default SIGKILL) and resolves once the process has exited. */
  handle.kill = async (signal = 'SIGKILL') => {
    const child = handle.child;
    if (!child || handle.exit) return handle.exit;
    handle.logs.push(`=== ${name}: test sends ${signal}`);
    const done = exited(child);
    child.kill(signal);
    return done;
  };

  /** SIGSTOP (paused = true) or SIGCONT; logs it in the tail. */
  const signalPaused = (paused) => {
    const child = handle.child;
    if (!child || handle.exit) return false;
    handle.logs.push(`=== ${name}: test sends ${paused ? 'SIGSTOP' : 'SIGCONT'}`);
    child.kill(paused ? 'SIGSTOP' : 'SIGCONT');
    handle.paused = paused;
    return true;
  };
  /** SIGSTOP: the process stays up for the OS but answers nothing (a long pause or a partition). */
  handle.pause = () => signalPaused(true);
  /** SIGCONT after pause(). */
  handle.resume = () => signalPaused(false);
  return handle;
}
