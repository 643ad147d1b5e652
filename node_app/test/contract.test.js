'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const c = require('../contract');

test('parseIntParam accepts only ^-?[0-9]+$ in range', () => {
  assert.equal(c.parseIntParam('n', undefined, 1, 10, 7), 7);
  assert.equal(c.parseIntParam('n', '10', 1, 10), 10);
  assert.equal(c.parseIntParam('n', '-0', 0, 10), 0);
  for (const bad of ['', '+1', ' 1', '1.0', '1e3', '0x1', '11', '0', '１']) {
    assert.throws(() => c.parseIntParam('n', bad, 1, 10), (e) => e.status === 400 && e.code === 'invalid_parameter');
  }
});

test('compact JSON: key order, no whitespace, non-ASCII and HTML as is', () => {
  assert.equal(c.compact({ a: 'é<&>', b: null }).toString(), '{"a":"é<&>","b":null}');
  assert.equal(c.errorBody('not_found', 'x').toString(), '{"error":{"code":"not_found","message":"x"}}');
});

test('recommendation body keys in contract order', () => {
  const s = c.summary(['Ann', 1000, 2, '300', null]);
  assert.equal(c.prompt(s), 'Ann spent 300 of a 1000 cent budget over 2 transactions; top category: none. One tip?');
  assert.deepEqual(Object.keys(c.recommendation(1, s, 'tip', 't')),
    ['user_id', 'name', 'budget_cents', 'spent_cents', 'transactions', 'top_category', 'advice', 'served_by']);
});

test('SSE events use Python json.dumps default form', () => {
  assert.equal(c.sseToken('é "x" '), 'data: {"token": "\\u00e9 \\"x\\" "}\n\n');
  assert.equal(c.sseError(true),
    'event: error\ndata: {"error": {"code": "upstream_timeout", "message": "the upstream stream timed out"}}\n\n');
});

test('isqrt and the /cpu sum', () => {
  assert.deepEqual([0, 1, 3, 4, 8, 9, 24, 25].map(c.isqrt), [0, 1, 1, 2, 2, 3, 4, 5]);
  assert.equal(c.cpuSum(1), 0);
  assert.equal(c.cpuSum(10), 0 + 1 + 1 + 1 + 2 + 2 + 2 + 2 + 2 + 3);
  assert.equal(c.cpuSum(100000), 21031854);
});
