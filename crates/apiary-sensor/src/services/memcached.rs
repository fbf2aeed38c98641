//! Memcached, text protocol: version, stats, get/set/delete on a small
//! per-connection store. (The UDP port, a DDoS amplifier, is not offered.)
//! Options: `version`.

use std::collections::HashMap;
use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const MAX_LINE: usize = 2048;
const MAX_VALUE: usize = 64 * 1024;
const MAX_KEYS: usize = 64;
const MAX_COMMANDS: usize = 1000;

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    let version = cfg.version.as_deref().unwrap_or("1.6.21");
    let mut store: HashMap<Vec<u8>, (u32, Vec<u8>)> = HashMap::new();
    let mut out = Vec::new();
    for _ in 0..MAX_COMMANDS {
        // Answers to pipelined commands go out together, once nothing
        // more is buffered, as a real server's would.
        if !out.is_empty() && (!conn.has_line() || out.len() > 64 * 1024) {
            conn.write(&out).await?;
            out.clear();
        }
        let Some(line) = conn.read_line(MAX_LINE).await? else { return Ok(()) };
        let text = String::from_utf8_lossy(&line).into_owned();
        let words: Vec<&str> = text.split_whitespace().collect();
        // An empty line is an unknown command to memcached too.
        let cmd = words.first().copied().unwrap_or("");
        let reply: Vec<u8> = match cmd {
            "version" => format!("VERSION {version}\r\n").into_bytes(),
            "stats" => stats(version, store.len()).into_bytes(),
            "get" | "gets" => {
                let mut out = Vec::new();
                for k in &words[1..] {
                    if let Some((flags, v)) = store.get(k.as_bytes()) {
                        out.extend(format!("VALUE {k} {flags} {}\r\n", v.len()).into_bytes());
                        out.extend_from_slice(v);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                out.extend_from_slice(b"END\r\n");
                out
            }
            "set" | "add" | "replace" | "append" | "prepend" | "cas" => {
                conn.info(Fact::command(&text)).await;
                let (Some(key), Some(flags), Some(len)) = (
                    words.get(1),
                    words.get(2).and_then(|f| f.parse::<u32>().ok()),
                    words.get(4).and_then(|n| n.parse::<usize>().ok()),
                ) else {
                    out.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
                    conn.write(&out).await?;
                    out.clear();
                    continue;
                };
                if len > MAX_VALUE {
                    out.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
                    return conn.write(&out).await;
                }
                if !out.is_empty() {
                    conn.write(&out).await?;
                    out.clear();
                }
                let Some(mut data) = conn.read_exact(len + 2).await? else { return Ok(()) };
                data.truncate(len);
                if store.len() < MAX_KEYS || store.contains_key(key.as_bytes()) {
                    store.insert(key.as_bytes().to_vec(), (flags, data));
                }
                if words.last() == Some(&"noreply") {
                    Vec::new()
                } else {
                    b"STORED\r\n".to_vec()
                }
            }
            "delete" => {
                let hit = words.get(1).and_then(|k| store.remove(k.as_bytes())).is_some();
                if hit {
                    b"DELETED\r\n".to_vec()
                } else {
                    b"NOT_FOUND\r\n".to_vec()
                }
            }
            "incr" | "decr" | "touch" => b"NOT_FOUND\r\n".to_vec(),
            "flush_all" => {
                store.clear();
                b"OK\r\n".to_vec()
            }
            "verbosity" => b"OK\r\n".to_vec(),
            "quit" => return conn.write(&out).await,
            _ => b"ERROR\r\n".to_vec(),
        };
        out.extend_from_slice(&reply);
    }
    conn.write(&out).await
}

fn stats(version: &str, items: usize) -> String {
    let now = apiary_model::time::now_ms() / 1000;
    format!(
        "STAT pid 1187\r\nSTAT uptime 2419230\r\nSTAT time {now}\r\nSTAT version {version}\r\nSTAT libevent 2.1.12-stable\r\nSTAT pointer_size 64\r\nSTAT rusage_user 120.437712\r\nSTAT rusage_system 240.132088\r\nSTAT max_connections 1024\r\nSTAT curr_connections 2\r\nSTAT total_connections 1513\r\nSTAT cmd_get 30117\r\nSTAT cmd_set 1702\r\nSTAT get_hits 28801\r\nSTAT get_misses 1316\r\nSTAT bytes 1048576\r\nSTAT curr_items {items}\r\nSTAT total_items 1702\r\nSTAT evictions 0\r\nSTAT threads 4\r\nEND\r\n"
    )
}
