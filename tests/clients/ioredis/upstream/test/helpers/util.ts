// ioredis's test/helpers/util.ts at dfd5428, with its MONITOR helpers (sleep,
// waitForMonitorReady, getCommandsFromMonitor) left out: no stream test uses them.
import Redis from "../../lib/Redis";
import { RedisOptions } from "../../lib/redis/RedisOptions";

export function toRecord(entry: unknown[]): Record<string, unknown> {
  const record: Record<string, unknown> = {};
  for (let index = 0; index < entry.length; index += 2) {
    record[String(entry[index])] = entry[index + 1];
  }

  return record;
}

type StreamEntry = [id: string, fields: string[] | null];
type StreamReadReply =
  | [key: string, entries: StreamEntry[]][]
  | Record<string, StreamEntry[]>
  | null;

export function countStreamEntries(reply: StreamReadReply): number {
  if (reply === null) {
    return 0;
  }

  if (Array.isArray(reply)) {
    return reply.reduce((total, [, entries]) => total + entries.length, 0);
  }

  return Object.values(reply).reduce(
    (total, entries) => total + entries.length,
    0
  );
}

function parseRedisVersion(version: string): number[] {
  return version.match(/\d+/g)?.slice(0, 2).map(Number) ?? [0, 0];
}

function compareRedisVersions(left: string, right: string): number {
  const leftParts = parseRedisVersion(left);
  const rightParts = parseRedisVersion(right);
  const length = Math.max(leftParts.length, rightParts.length);

  for (let index = 0; index < length; index++) {
    const difference = (leftParts[index] ?? 0) - (rightParts[index] ?? 0);
    if (difference !== 0) {
      return difference;
    }
  }

  return 0;
}

export async function isRedisVersionLowerThan(
  minimumVersion: string,
  options?: RedisOptions
): Promise<boolean> {
  const redis = new Redis(options);

  try {
    const info = await redis.info("server");
    const version = info.match(/^redis_version:(.+)$/m)?.[1]?.trim();

    if (!version) {
      throw new Error(
        "Could not determine redis_version from INFO server response"
      );
    }

    return compareRedisVersions(version, minimumVersion) < 0;
  } finally {
    redis.disconnect();
  }
}
