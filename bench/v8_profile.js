'use strict';
// `bench profile` preloads this into every process of a Node target (NODE_OPTIONS=--require, so
// node:cluster's workers too; bench/profile.py): V8's CPU profiler through the inspector module.
// The first SIGUSR2 starts it, the next stops it and writes the profile to
// $LAB_V8_PROFILE_PREFIX-<pid>.cpuprofile (speedscope and Chrome's DevTools open it). Nothing
// runs until the signal; without the environment variable this file does nothing.
const prefix = process.env.LAB_V8_PROFILE_PREFIX;
if (prefix) {
  const fs = require('node:fs');
  const inspector = require('node:inspector');
  const intervalUs = Number(process.env.LAB_V8_PROFILE_INTERVAL_US || 10000);
  const session = new inspector.Session();
  session.connect();
  let running = false;
  process.on('SIGUSR2', () => {
    running = !running;
    if (running) {
      session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval',
        { interval: intervalUs }, () => session.post('Profiler.start')));
      return;
    }
    session.post('Profiler.stop', (err, result) => {
      if (err) {
        console.error(`v8_profile: ${err.message}`);
        return;
      }
      const out = `${prefix}-${process.pid}.cpuprofile`;
      fs.writeFileSync(`${out}.tmp`, JSON.stringify(result.profile));
      fs.renameSync(`${out}.tmp`, out); // whole or not at all: the harness waits for this name
    });
  });
}
