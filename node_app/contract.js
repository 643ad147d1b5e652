'use strict';
// What docs/CONTRACT.md pins down, as pure functions: validation, the SQL, the prompt, the
// JSON wire forms, the /cpu sum. server.js only wires these to Express, pg and openai.

const INT_RE = /^-?[0-9]+$/;

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// text (undefined = absent) -> integer in [lo, hi], or ApiError 400 with the contract's message
function parseIntParam(name, text, lo, hi, dflt) {
  if (text === undefined) return dflt;
  const v = Number(text) + 0; // + 0: "-0" is 0
  if (!INT_RE.test(text) || !(v >= lo && v <= hi)) {
    throw new ApiError(400, 'invalid_parameter', `${name} must be an integer in ${lo}..${hi}`);
  }
  return v;
}

// One wire form: compact, non-ASCII as is, nothing HTML-escaped (JSON.stringify does exactly that).
const compact = (obj) => Buffer.from(JSON.stringify(obj), 'utf8');
const errorBody = (code, message) => compact({ error: { code, message } });

// Python json.dumps default form (", " and ": ", ensure_ascii) for one string-valued key.
function pyString(s) {
  return JSON.stringify(s).replace(/[\u0080-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}
const sseToken = (token) => `data: {"token": ${pyString(token)}}\n\n`;
const SSE_DONE = 'data: [DONE]\n\n';
function sseError(timeout) {
  const [code, message] = timeout
    ? ['upstream_timeout', 'the upstream stream timed out']
    : ['upstream_error', 'the upstream stream failed'];
  return `event: error\ndata: {"error": {"code": ${pyString(code)}, "message": ${pyString(message)}}}\n\n`;
}

const USER_SQL = `WITH recent AS (
    SELECT amount_cents, category FROM transactions
    WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 20)
SELECT u.name, u.monthly_budget_cents,
       (SELECT count(*) FROM recent)::int,
       (SELECT coalesce(sum(amount_cents), 0) FROM recent)::bigint,
       (SELECT category FROM recent GROUP BY category
        ORDER BY sum(amount_cents) DESC, category ASC LIMIT 1)
FROM users u WHERE u.id = $1`;

// pg row (rowMode 'array') -> the user summary
function summary(row) {
  return { name: row[0], budget_cents: Number(row[1]), transactions: Number(row[2]),
    spent_cents: Number(row[3]), top_category: row[4] };
}

function prompt(s) {
  return `${s.name} spent ${s.spent_cents} of a ${s.budget_cents} cent budget over ` +
    `${s.transactions} transactions; top category: ${s.top_category ?? 'none'}. One tip?`;
}

function messages(s) {
  return [{ role: 'system', content: 'You are a concise personal-finance assistant.' },
    { role: 'user', content: prompt(s) }];
}

function recommendation(userId, s, advice, servedBy) {
  return { user_id: userId, name: s.name, budget_cents: s.budget_cents, spent_cents: s.spent_cents,
    transactions: s.transactions, top_category: s.top_category, advice, served_by: servedBy };
}

function isqrt(i) {
  let r = Math.floor(Math.sqrt(i));
  while (r * r > i) r--;
  while ((r + 1) * (r + 1) <= i) r++;
  return r;
}

// sum(isqrt(i) for i in range(n)); exact in a double for n <= 5e6 (about 7.5e9)
function cpuSum(n) {
  let total = 0;
  for (let i = 0; i < n; i++) total += isqrt(i);
  return total;
}

module.exports = { ApiError, parseIntParam, compact, errorBody, pyString, sseToken, SSE_DONE,
  sseError, USER_SQL, summary, prompt, messages, recommendation, isqrt, cpuSum };
