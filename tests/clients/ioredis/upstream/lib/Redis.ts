// Not ioredis's source: the suite's tests import the client as "../../../lib/Redis" (its
// own tree); here that is the published ioredis package, pointed at cortex's RESP port
// (CORTEX_RESP_PORT, set by ../../run.js) instead of Redis's default 6379.
import IORedis, { RedisOptions } from "ioredis";

function cortexPort(): number {
  const port = Number(process.env.CORTEX_RESP_PORT);
  if (!Number.isInteger(port) || port <= 0) {
    throw new Error("CORTEX_RESP_PORT is not set: run the suite through run.js");
  }
  return port;
}

export default class Redis extends IORedis {
  constructor(options: RedisOptions = {}) {
    super({ host: "127.0.0.1", port: cortexPort(), ...options });
  }
}
