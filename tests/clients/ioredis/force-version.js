// Loaded by mocha before the suite (--require): the suite skips each Redis 8 command's tests
// by the server's INFO redis_version (helpers/util.ts, isRedisVersionLowerThan), and the
// RESP port reports 7.4.x. This forces that check to FORCE_REDIS_VERSION, as
// ../redis_py_suite.py does for redis-py's suite, instead of the server reporting 8.x.
'use strict';
const util = require('./upstream/test/helpers/util');

const FORCE_REDIS_VERSION = '8.10.0';
const parts = (v) => (v.match(/\d+/g) || []).slice(0, 2).map(Number);

util.isRedisVersionLowerThan = async (minimum) => {
  const [a, b] = [parts(FORCE_REDIS_VERSION), parts(minimum)];
  return a[0] !== b[0] ? a[0] < b[0] : (a[1] || 0) < (b[1] || 0);
};
