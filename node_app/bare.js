'use strict';
// node-express-bare: Express's hello-world, context for memory claims (not a benchmark target).
// Started exactly like node-express (same node, same flags; see targets.toml) but requires nothing
// beyond Express: no pg, no openai SDK, no contract code. Its idle memory is the framework's own
// cost; node-express's minus it is the app's.
const { parseArgs } = require('node:util');
const express = require('express');

const { values: args } = parseArgs({ options: { host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string' }, graceful: { type: 'string', default: '5' } } });

const app = express();
app.get('/healthz', (req, res) => res.json({ status: 'ok' }));
app.get('/readyz', (req, res) => res.json({ status: 'ready' })); // nothing to be ready for

const server = app.listen(Number(args.port), args.host);
const stop = () => {
  setTimeout(() => process.exit(0), Number(args.graceful) * 1000).unref();
  server.close(() => process.exit(0));
  server.closeIdleConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
