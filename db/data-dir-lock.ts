// An exclusive lock on the embedded database's data directory. PGlite has none of its own,
// and two processes writing one data directory would corrupt it.
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";

export class DataDirLockedError extends Error {
  override name = "DataDirLockedError";
}

const LOCK_FILE = "token-authority.lock";

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return false; // a lock of ours from a previous life of this pid
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readPid(path: string): number | undefined {
  try {
    return Number.parseInt(readFileSync(path, "utf8").trim(), 10);
  } catch {
    return undefined;
  }
}

export interface DataDirLock {
  readonly path: string;
  release(): void;
}

/**
 * Creates `dir` (recursively) and takes its lock file. A lock whose process is gone (SIGKILL,
 * power loss) is taken over; a lock held by a live process is refused naming that pid.
 */
export function lockDataDir(dir: string): DataDirLock {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      let released = false;
      return {
        path,
        release() {
          if (released) return;
          released = true;
          if (readPid(path) === process.pid) unlinkSync(path);
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = readPid(path);
    if (holder !== undefined && isAlive(holder)) {
      throw new DataDirLockedError(
        `data directory ${dir} is in use by process ${holder}; stop it first, or give this instance another TA_DATA_DIR`,
      );
    }
    // Stale: move it aside atomically, so two processes taking over at once cannot both win.
    const aside = `${path}.stale-${process.pid}-${attempt}`;
    try {
      renameSync(path, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw error;
    }
    const moved = readPid(aside);
    if (moved !== holder && moved !== undefined && isAlive(moved)) {
      // We moved a lock that a live process had just taken: put it back and yield to it.
      try {
        linkSync(aside, path);
      } catch {
        // it re-created the file meanwhile
      }
      unlinkSync(aside);
      throw new DataDirLockedError(`data directory ${dir} is in use by process ${moved}`);
    }
    unlinkSync(aside);
  }
  throw new DataDirLockedError(`could not lock data directory ${dir}`);
}
