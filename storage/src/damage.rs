//! What is damaged when fjall cannot open a store: each table file's archive trailer and
//! table of contents, checked file by file, so the error names the file and its keyspace.

use std::path::Path;

use crate::error::Error;

/// The keyspaces in the order the store creates them: fjall numbers them from 1 in that
/// order (0 is its own), so `keyspaces/N` is the Nth of these.
const KEYSPACE_NAMES: [&str; 15] = [
    "streams",
    "groups",
    "consumers",
    "entries",
    "lanes",
    "pel",
    "cpel",
    "due",
    "ready",
    "idem",
    "idem_exp",
    "sys",
    "nodes",
    "sched",
    "tasks",
];

/// Table files under `dir` whose archive trailer or table of contents is damaged (a
/// truncated or torn file, flipped bytes in its end): `(path relative to dir, the
/// keyspace's name, what is wrong)`. fjall cannot open a store with one of these.
pub fn damaged_table_files(dir: &Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Ok(keyspaces) = std::fs::read_dir(dir.join("keyspaces")) else {
        return out;
    };
    let mut found: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for ks in keyspaces.flatten() {
        let id = ks.file_name().to_string_lossy().parse().unwrap_or(u64::MAX);
        let Ok(tables) = std::fs::read_dir(ks.path().join("tables")) else {
            continue;
        };
        found.extend(tables.flatten().map(|t| (id, t.path())));
    }
    found.sort();
    for (id, path) in found {
        if let Err(e) = sfa::Reader::new(&path) {
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            let name = match id {
                0 => "fjall's own".to_string(),
                n => KEYSPACE_NAMES
                    .get(n as usize - 1)
                    .map_or_else(|| format!("keyspace {n}"), |s| s.to_string()),
            };
            out.push((rel, name, format!("{e:?}")));
        }
    }
    out
}

/// Why fjall could not open the store at `dir`: its error, and the table files found
/// damaged, if any (which fjall's error does not name), with what to do.
pub(crate) fn why_unopenable(dir: &Path, e: fjall::Error) -> Error {
    let damaged = damaged_table_files(dir);
    if damaged.is_empty() {
        return Error::Storage(e);
    }
    let files: Vec<String> = damaged
        .iter()
        .map(|(f, ks, why)| format!("{f} ({ks}: {why})"))
        .collect();
    Error::Corruption {
        what: "table file",
        stream: Vec::new(),
        id: None,
        reason: format!(
            "{} cannot be read, so the store cannot be opened ({e}): restore the data directory from a backup (cortex backup), or on a cluster node replace the node (see deploy/README.md)",
            files.join(", ")
        ),
    }
}
