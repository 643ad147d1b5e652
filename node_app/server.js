'use strict';
// node-express (one process) and node-express-cluster (node:cluster, --workers N): the contract
// of docs/CONTRACT.md on Express 5, a pg Pool and the openai SDK. Everything async on one event
// loop per process; /cpu runs on that loop and blocks it (seed 000's lesson, on purpose).
const cluster = require('node:cluster');
const { parseArgs } = require('node:util');
const express = require('express');
const { Pool, Client } = require('pg');
const OpenAI = require('openai');
const c = require('./contract');

const { values: args } = parseArgs({ options: { host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string' }, graceful: { type: 'string', default: '5' },
  workers: { type: 'string', default: '0' } } });
const env = process.env;
const num = (name, dflt) => (env[name] === undefined ? dflt : Number(env[name]));
const S = { targetName: env.TARGET_NAME, dbMs: num('DB_MS', 50), llmMs: num('LLM_MS', 500),
  timeoutMs: num('UPSTREAM_TIMEOUT_S', 30) * 1000, poolSize: num('DB_POOL_SIZE', 15),
  poolTimeoutMs: num('DB_POOL_TIMEOUT_S', 30) * 1000, dbTimeoutMs: num('DB_TIMEOUT_S', 10) * 1000,
  gracefulMs: Number(args.graceful) * 1000 };
const workers = Number(args.workers);

if (workers > 0 && cluster.isPrimary) {
  // The primary only forks, restarts crashed workers and forwards SIGTERM to them.
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
    else if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), S.gracefulMs + 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  serve();
}

function serve() {
  // max = the fairness rule's min(capacity, 15); connectionTimeoutMillis = the pool wait, while a
  // new connection's own (its Client's) is DB_TIMEOUT_S, as is each statement's: the server cancels
  // it (statement_timeout) and the client gives up on a server that does not answer (query_timeout).
  const pool = new Pool({ connectionString: env.DATABASE_URL, max: S.poolSize,
    connectionTimeoutMillis: S.poolTimeoutMs, statement_timeout: S.dbTimeoutMs, query_timeout: S.dbTimeoutMs,
    Client: class extends Client {
      constructor(config) { super({ ...config, connectionTimeoutMillis: S.dbTimeoutMs }); }
    } });
  pool.on('error', () => {}); // an idle connection died: the pool drops it
  // A checked-out client has no listener of the pool's, so an error the server sends while a request
  // holds it (a fast shutdown's 57P01) would be an unhandled 'error' event and end the process. With
  // this one it only marks the client unqueryable: its next query fails, and the pool drops it.
  pool.on('connect', (client) => client.on('error', (e) => console.error(`database connection lost: ${e.message}`)));
  const openai = new OpenAI({ baseURL: env.UPSTREAM_URL.replace(/\/+$/, '') + '/v1', apiKey: 'mock',
    maxRetries: 0, timeout: S.timeoutMs });

  const send = (res, status, buf) => {
    res.statusCode = status;
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', buf.length);
    res.end(buf);
  };
  const sendError = (res, e) => send(res, e.status, c.errorBody(e.code, e.message));
  const unavailable = () => new c.ApiError(503, 'database_unavailable', 'the database is unavailable');
  // a dead pooled connection (PostgreSQL restarted) is retried once; a timeout is not: it would wait again
  const retryable = (e) => !/timeout/i.test(e.message) && (!e.severity || /^(08|57P)/.test(e.code));

  async function loadUser(userId, dbMs) {
    for (let attempt = 0; ; attempt++) {
      let client;
      try {
        client = await pool.connect();
        if (dbMs > 0) await client.query('SELECT pg_sleep($1 / 1000.0)', [dbMs]);
        const r = await client.query({ text: c.USER_SQL, values: [userId], rowMode: 'array' });
        client.release();
        if (r.rows.length === 0) throw new c.ApiError(404, 'not_found', 'user not found');
        return c.summary(r.rows[0]);
      } catch (e) {
        if (e instanceof c.ApiError) throw e;
        if (client) client.release(e);
        if (attempt === 0 && retryable(e)) continue;
        console.error(`database unavailable: ${e.message}`);
        throw unavailable();
      }
    }
  }

  const upstreamError = (e, timedOut = false) => {
    console.error(`upstream failed: ${e.message}`); // the cause: the log's, not the client's
    return timedOut || e instanceof OpenAI.APIConnectionTimeoutError
      ? new c.ApiError(504, 'upstream_timeout', 'the upstream timed out')
      : new c.ApiError(502, 'upstream_error', 'the upstream failed');
  };

  function params(req, extra) {
    const q = new URL(req.url, 'http://x').searchParams;
    const get = (n) => { const all = q.getAll(n); return all.length ? all[all.length - 1] : undefined; };
    const p = { userId: c.parseIntParam('user_id', req.params.user_id, 1, 2147483647) };
    p.dbMs = c.parseIntParam('db_ms', get('db_ms'), 0, 5000, S.dbMs);
    p.llmMs = c.parseIntParam('llm_ms', get('llm_ms'), 0, 20000, S.llmMs);
    if (extra) p.tokens = c.parseIntParam('tokens', get('tokens'), 1, 1000, 16);
    return p;
  }

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('strict routing', true);
  app.set('case sensitive routing', true);

  app.get('/healthz', (req, res) => send(res, 200, c.compact({ status: 'ok' })));
  app.get('/readyz', async (req, res) => {
    try {
      await pool.query('SELECT 1');
      send(res, 200, c.compact({ status: 'ready' }));
    } catch {
      sendError(res, unavailable());
    }
  });
  app.get('/cpu', (req, res) => {
    const q = new URL(req.url, 'http://x').searchParams.getAll('n');
    const n = c.parseIntParam('n', q.length ? q[q.length - 1] : undefined, 1, 5000000, 100000);
    send(res, 200, c.compact({ n, result: c.cpuSum(n) }));
  });
  app.get('/recommendation/:user_id', async (req, res) => {
    const p = params(req, false);
    const s = await loadUser(p.userId, p.dbMs);
    let advice;
    // One deadline for the whole call: the SDK's timeout stops at the response headers, and a body
    // dribbled a byte at a time would be read to its end.
    const deadline = AbortSignal.timeout(S.timeoutMs);
    try {
      const r = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: c.messages(s) },
        { headers: { 'X-Mock-Latency-Ms': String(p.llmMs) }, signal: deadline });
      advice = r.choices[0].message.content;
    } catch (e) {
      throw upstreamError(e, deadline.aborted);
    }
    send(res, 200, c.compact(c.recommendation(p.userId, s, advice, S.targetName)));
  });
  app.get('/stream/:user_id', async (req, res) => {
    const p = params(req, true);
    const s = await loadUser(p.userId, p.dbMs);
    let stream;
    try {
      stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: c.messages(s),
        stream: true, max_completion_tokens: p.tokens },
      { headers: { 'X-Mock-Latency-Ms': String(p.llmMs) } });
    } catch (e) {
      throw upstreamError(e);
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache',
      'X-Accel-Buffering': 'no' });
    let timedOut = false;
    let timer;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => { timedOut = true; stream.controller.abort(); }, S.timeoutMs);
    };
    res.on('close', () => { if (!res.writableEnded) stream.controller.abort(); });
    try {
      arm();
      for await (const chunk of stream) {
        arm();
        const token = chunk.choices?.[0]?.delta?.content;
        if (token) res.write(c.sseToken(token));
      }
      if (timedOut) throw new Error('no data for UPSTREAM_TIMEOUT_S'); // an abort ends the loop quietly
      res.write(c.SSE_DONE);
    } catch (e) {
      console.error(`stream failed: ${e.message}`);
      res.write(c.sseError(timedOut || e instanceof OpenAI.APIConnectionTimeoutError));
    } finally {
      clearTimeout(timer);
      res.end();
    }
  });
  app.get('/recommendation/', () => {
    c.parseIntParam('user_id', '', 1, 2147483647); // the empty user_id: the contract's 400
  });
  for (const path of ['/healthz', '/readyz', '/cpu', '/recommendation/', '/recommendation/:user_id',
    '/stream/:user_id']) {
    app.all(path, (req, res) => sendError(res, new c.ApiError(405, 'method_not_allowed', 'method not allowed')));
  }
  app.use((req, res) => sendError(res, new c.ApiError(404, 'not_found', 'no such route')));
  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => {
    if (!(err instanceof c.ApiError)) {
      if (err.status !== 400) console.error(err);
      err = err.status === 400 ? new c.ApiError(400, 'invalid_parameter', 'invalid request')
        : new c.ApiError(500, 'internal_error', 'internal server error');
    }
    if (res.headersSent) res.end();
    else sendError(res, err);
  });

  const server = app.listen(Number(args.port), args.host);
  const stop = () => {
    setTimeout(() => process.exit(0), S.gracefulMs).unref();
    setInterval(() => server.closeIdleConnections(), 50).unref();
    server.close(() => pool.end().finally(() => process.exit(0)));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
