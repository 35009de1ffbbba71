#!/usr/bin/env node
// Node.js cluster as a reference server for the prefork-lab harness.
//
//   NODE_CLUSTER_SCHED_POLICY=rr|none node cluster.js --port P --workers N
//
// The primary forks N workers; each runs http.createServer on 127.0.0.1:P.
// How connections reach the workers is cluster's scheduling policy, read by
// the cluster module itself from NODE_CLUSTER_SCHED_POLICY when it loads:
//   rr   - the primary accepts every connection and sends the fd to a worker
//          over its IPC channel (SCHED_RR, the default on Linux);
//   none - the primary sends the listening socket to each worker once and
//          every worker accepts from it (SCHED_NONE).
// --port 0 lets the kernel pick: all workers share the primary's one handle,
// so they all get the same port.
//
// Requests, like lab-server: GET /?cpu_us=N&sleep_us=M&bytes=B burns N µs of
// CPU, then waits M µs without blocking the worker, then answers with B body
// bytes (default: "ok"); every response carries X-Worker: <worker pid>.
// Another path is a 404, a bad or unknown parameter a 400.
//
// When every worker listens, the primary prints one line on stdout:
//   {"event":"ready","addr":"127.0.0.1:P","strategy":"node:rr","master_pid":..,"worker_pids":[..]}
// SIGTERM or SIGINT to the primary stops the workers and exits 0 within 2 s.
// Workers exit when the primary dies (their IPC channel closes).
// Once ready, a worker that dies is replaced by a new fork (what every
// cluster application does in its 'exit' handler), with a line on stderr.
// SIGHUP to the primary is a rolling restart, one worker at a time, the way
// cluster applications do it: fork the replacement, wait until it listens,
// then worker.disconnect() the old one (its server stops taking connections
// - in rr mode the primary stops handing it any - and it exits when its
// open connections have ended; killed after 2 s if it has not).
//
// Plain Node >= 18, no npm packages.
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');

// Limits as in lab-server (strategies/common/src/work.rs).
const MAX = { cpu_us: 10_000_000, sleep_us: 60_000_000, bytes: 1 << 30 };
const FILLER = Buffer.alloc(64 * 1024, 'x');

function fail(msg) {
  process.stderr.write(`cluster.js: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { port: null, workers: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (flag !== '--port' && flag !== '--workers') {
      fail(`unknown argument ${arg}; usage: cluster.js --port P --workers N`);
    }
    if (value === undefined || !/^\d+$/.test(value)) fail(`${flag} needs a whole number`);
    opts[flag.slice(2)] = Number(value);
  }
  if (opts.port === null || opts.port > 65535) fail('--port P (0..65535) is required');
  if (!opts.workers) fail('--workers N (1 or more) is required');
  return opts;
}

// ---------------------------------------------------------------- primary

function primary() {
  const { port, workers } = parseArgs(process.argv.slice(2));
  const env = process.env.NODE_CLUSTER_SCHED_POLICY;
  if (env !== undefined && env !== 'rr' && env !== 'none') {
    fail(`NODE_CLUSTER_SCHED_POLICY=${env}: use rr or none`);
  }
  const policy = cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none';
  // Our own tally: cluster.workers keeps a worker that exited until its
  // IPC channel has closed too, which may come later.
  const alive = new Map(); // worker id -> Worker
  const listening = new Map(); // worker id -> port
  let ready = false;
  let stopping = false;
  let exitCode = 0;

  function shutdown(code) {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    if (alive.size === 0) process.exit(code);
    // SIGTERM rather than worker.disconnect(): disconnect waits for every
    // keep-alive connection to end, a stop must not.
    for (const w of alive.values()) w.process.kill('SIGTERM');
    setTimeout(() => {
      for (const w of alive.values()) w.process.kill('SIGKILL');
      setTimeout(() => process.exit(code), 300).unref();
    }, 1500).unref();
  }

  cluster.on('listening', (worker, address) => {
    listening.set(worker.id, address.port);
    if (ready || stopping || listening.size < workers) return;
    const ports = new Set(listening.values());
    if (ports.size !== 1) {
      process.stderr.write(`cluster.js: the workers listen on different ports: ${[...ports]}\n`);
      shutdown(1);
      return;
    }
    ready = true;
    const line = {
      event: 'ready',
      addr: `127.0.0.1:${[...ports][0]}`,
      strategy: `node:${policy}`,
      master_pid: process.pid,
      worker_pids: [...alive.values()].map((w) => w.process.pid),
    };
    process.stdout.write(JSON.stringify(line) + '\n');
  });

  const retiring = new Set(); // worker ids being replaced by a restart
  let restarting = false;

  function fork() {
    const w = cluster.fork({ CLUSTER_PORT: String(port) });
    alive.set(w.id, w);
    return w;
  }

  cluster.on('exit', (worker, code, signal) => {
    alive.delete(worker.id);
    listening.delete(worker.id);
    if (retiring.delete(worker.id)) {
      if (stopping && alive.size === 0) process.exit(exitCode);
      return;
    }
    if (!stopping) {
      process.stderr.write(
        `cluster.js: worker ${worker.process.pid} died (${signal || `exit code ${code}`})` +
          `${ready ? '' : ' before every worker was listening'}\n`,
      );
      if (!ready) {
        shutdown(1);
      } else {
        const w = fork();
        process.stderr.write(`cluster.js: replaced by pid ${w.process.pid}\n`);
      }
    }
    if (stopping && alive.size === 0) process.exit(exitCode);
  });

  // One worker at a time: the replacement listens before the old one is
  // disconnected, so the server never has fewer than N workers taking
  // connections.
  function rollingRestart() {
    if (!ready || stopping) return;
    if (restarting) {
      process.stderr.write('cluster.js: SIGHUP during a rolling restart: ignored\n');
      return;
    }
    restarting = true;
    const old = [...alive.values()];
    const next = (i) => {
      if (stopping) return;
      if (i === old.length) {
        restarting = false;
        process.stderr.write('cluster.js: rolling restart done\n');
        return;
      }
      const prev = old[i];
      if (!alive.has(prev.id)) return next(i + 1);
      const w = fork();
      w.once('listening', () => {
        retiring.add(prev.id);
        process.stderr.write(
          `cluster.js: rolling restart: pid ${prev.process.pid} -> pid ${w.process.pid}\n`,
        );
        const timer = setTimeout(() => prev.process.kill('SIGKILL'), 2000);
        timer.unref();
        prev.once('exit', () => {
          clearTimeout(timer);
          next(i + 1);
        });
        prev.disconnect();
      });
    };
    next(0);
  }

  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));
  process.on('SIGHUP', rollingRestart);

  for (let i = 0; i < workers; i++) fork();
}

// ----------------------------------------------------------------- worker

// Parses a request target; returns {status, body} for an error, or the work.
function parseTarget(url) {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q + 1);
  if (path !== '/') return { status: 404, body: 'not found\n' };
  const work = { cpu_us: 0, sleep_us: 0, bytes: null };
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const value = eq < 0 ? '' : pair.slice(eq + 1);
    if (!(key in MAX)) {
      return { status: 400, body: `unknown parameter ${JSON.stringify(key)}; known: cpu_us, sleep_us, bytes\n` };
    }
    if (!/^\d+$/.test(value)) return { status: 400, body: `${key}=${value} is not a whole number\n` };
    const n = Number(value);
    if (n > MAX[key]) return { status: 400, body: `${key}=${value} is above the limit ${MAX[key]}\n` };
    work[key] = n;
  }
  return { work };
}

// Spins until this process has used `us` more microseconds of CPU. Node 20
// has no per-thread CPU clock (process.threadCpuUsage came in 23.9), so this
// counts the whole process, GC and libuv threads included; on an idle worker
// that is the event-loop thread's time, near enough. Spinning on CPU time
// rather than the wall clock keeps the cost of a request at N µs of CPU when
// the worker is preempted, as lab-server does.
function burnCpu(us) {
  if (us <= 0) return;
  const start = process.cpuUsage();
  for (;;) {
    const d = process.cpuUsage(start);
    if (d.user + d.system >= us) return;
  }
}

function respond(res, work) {
  const pid = String(process.pid);
  if (work.bytes === null) {
    res.writeHead(200, { 'X-Worker': pid, 'Content-Type': 'text/plain', 'Content-Length': 2 });
    res.end('ok');
    return;
  }
  res.writeHead(200, { 'X-Worker': pid, 'Content-Type': 'text/plain', 'Content-Length': work.bytes });
  let left = work.bytes;
  // The body goes out 64 KiB at a time, waiting for 'drain' when the
  // socket's buffer is full, so a 1 GiB body costs no 1 GiB of memory.
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, FILLER.length);
      left -= n;
      const more = res.write(n === FILLER.length ? FILLER : FILLER.subarray(0, n));
      if (!more && left > 0) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

function worker() {
  const port = Number(process.env.CLUSTER_PORT);
  const server = http.createServer((req, res) => {
    const parsed = parseTarget(req.url);
    if (parsed.status) {
      res.writeHead(parsed.status, {
        'X-Worker': String(process.pid),
        'Content-Type': 'text/plain',
        'Content-Length': Buffer.byteLength(parsed.body),
      });
      res.end(parsed.body);
      return;
    }
    const { work } = parsed;
    burnCpu(work.cpu_us);
    if (work.sleep_us > 0) {
      // setTimeout has millisecond granularity: a wait is rounded up to
      // whole milliseconds (sleep_us=200 waits about 1 ms), where lab-server
      // uses a microsecond timer.
      setTimeout(() => respond(res, work), Math.ceil(work.sleep_us / 1000));
    } else {
      respond(res, work);
    }
  });
  // Keep-alive as the load generator expects: no idle cut-off shorter than a
  // run, no cap on requests per connection, no request timeout (a request
  // may ask to wait up to 60 s).
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0;
  server.maxRequestsPerSocket = 0;
  server.on('error', (e) => {
    process.stderr.write(`cluster.js: worker ${process.pid}: ${e.message}\n`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1');
  // The primary is gone (its IPC channel closed): nobody will stop us.
  process.on('disconnect', () => process.exit(0));
}

if (cluster.isPrimary) primary();
else worker();
