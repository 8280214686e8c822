// Not ioredis's source: the type the suite's helpers import from ioredis's own tree.
export type { RedisOptions } from "ioredis";
