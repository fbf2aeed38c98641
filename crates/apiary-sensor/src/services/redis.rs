//! Redis (RESP2, and the inline command form `redis-cli` and netcat users send).
//!
//! Answers like an unprotected Redis so that the usual attack (CONFIG SET dir
//! / dbfilename, SET a cron payload, SAVE; or SLAVEOF a rogue master and
//! MODULE LOAD) plays out and is recorded as INFO `command` facts. SLAVEOF is
//! acknowledged and never acted on: the sensor connects nowhere.
//! Options: `version`, `hostname`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const MAX_ARGS: usize = 64;
const MAX_ARG: usize = 64 * 1024;
const MAX_KEYS: usize = 64;
const MAX_COMMANDS: usize = 1000;

/// Reads one command as its arguments; `None` at EOF.
async fn read_command(conn: &mut Conn) -> io::Result<Option<Vec<Vec<u8>>>> {
    let Some(line) = conn.read_line(MAX_ARG).await? else { return Ok(None) };
    if let Some(n) = line.strip_prefix(b"*") {
        let n: usize = parse_num(n).ok_or_else(|| io::Error::other("bad array length"))?;
        if n > MAX_ARGS {
            return Err(io::Error::other("too many arguments"));
        }
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(head) = conn.read_line(64).await? else { return Ok(None) };
            let len = head.strip_prefix(b"$").and_then(parse_num).ok_or_else(|| io::Error::other("bad bulk"))?;
            if len > MAX_ARG {
                return Err(io::Error::other("bulk too long"));
            }
            let Some(mut arg) = conn.read_exact(len + 2).await? else { return Ok(None) };
            arg.truncate(len);
            args.push(arg);
        }
        return Ok(Some(args));
    }
    Ok(Some(
        line.split(|b| b.is_ascii_whitespace()).filter(|a| !a.is_empty()).take(MAX_ARGS).map(<[u8]>::to_vec).collect(),
    ))
}

fn parse_num(b: &[u8]) -> Option<usize> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

/// A fixed answer, borrowed rather than copied into a new `Vec`.
fn lit(answer: &'static [u8]) -> Cow<'static, [u8]> {
    Cow::Borrowed(answer)
}

fn array(items: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for i in items {
        out.extend(bulk(i));
    }
    out
}

/// The configuration every connection starts with.
fn default_config() -> HashMap<String, String> {
    [("dir", "/var/lib/redis"), ("dbfilename", "dump.rdb"), ("requirepass", ""), ("maxmemory", "0")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The arguments as one line of text, for the INFO `command` fact.
fn joined(args: &[Vec<u8>]) -> String {
    let mut out = String::with_capacity(args.iter().map(|a| a.len() + 1).sum());
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&String::from_utf8_lossy(a));
    }
    out
}

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    let version = cfg.version.as_deref().unwrap_or("6.0.16");
    let mut store: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    // Made at the first CONFIG command: most connections send none, and the
    // defaults are eight small allocations.
    let mut config: Option<HashMap<String, String>> = None;
    let mut out = Vec::new();
    for _ in 0..MAX_COMMANDS {
        // Answers to pipelined commands go out together, once nothing
        // more is buffered, as a real server's would.
        if !out.is_empty() && (!conn.has_line() || out.len() > 64 * 1024) {
            conn.write(&out).await?;
            out.clear();
        }
        let Some(args) = read_command(conn).await? else { return Ok(()) };
        let Some(name) = args.first() else { continue };
        let cmd = String::from_utf8_lossy(name).to_ascii_uppercase();
        let arg = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        conn.info(Fact::command(joined(&args))).await;
        let reply: Cow<'static, [u8]> = match cmd.as_str() {
            "PING" => {
                if args.len() > 1 {
                    bulk(&args[1]).into()
                } else {
                    lit(b"+PONG\r\n")
                }
            }
            "ECHO" => bulk(args.get(1).map_or(&[][..], |a| a)).into(),
            "AUTH" => {
                let (user, pass) = if args.len() > 2 { (arg(1), arg(2)) } else { ("default".into(), arg(1)) };
                conn.info(Fact::login(&user, &pass).with("method", "auth")).await;
                lit(b"+OK\r\n")
            }
            "INFO" => bulk(info(version, cfg.hostname(), store.len()).as_bytes()).into(),
            "CONFIG" => match arg(1).to_ascii_uppercase().as_str() {
                "GET" => {
                    let pat = arg(2);
                    let config = config.get_or_insert_with(default_config);
                    let hits: Vec<(&String, &String)> =
                        config.iter().filter(|(k, _)| pat == "*" || **k == pat.to_ascii_lowercase()).collect();
                    let mut items: Vec<&[u8]> = Vec::new();
                    for (k, v) in &hits {
                        items.push(k.as_bytes());
                        items.push(v.as_bytes());
                    }
                    array(&items).into()
                }
                "SET" if config.as_ref().is_none_or(|c| c.len() < MAX_KEYS) => {
                    config.get_or_insert_with(default_config).insert(arg(2).to_ascii_lowercase(), arg(3));
                    lit(b"+OK\r\n")
                }
                "SET" | "RESETSTAT" | "REWRITE" => lit(b"+OK\r\n"),
                _ => lit(b"-ERR Unknown subcommand or wrong number of arguments for 'CONFIG'. Try CONFIG HELP.\r\n"),
            },
            "SET" | "SETEX" | "SETNX" | "HSET" | "LPUSH" | "RPUSH" | "SADD" => {
                if store.len() < MAX_KEYS || store.contains_key(args.get(1).map_or(&[][..], |a| a)) {
                    let value = args.last().cloned().unwrap_or_default();
                    store.insert(args.get(1).cloned().unwrap_or_default(), value);
                }
                if cmd == "SET" || cmd == "SETEX" {
                    lit(b"+OK\r\n")
                } else {
                    lit(b":1\r\n")
                }
            }
            "GET" if args.len() != 2 => lit(b"-ERR wrong number of arguments for 'get' command\r\n"),
            "GET" => match args.get(1).and_then(|k| store.get(k)) {
                Some(v) => bulk(v).into(),
                None => lit(b"$-1\r\n"),
            },
            "DEL" | "UNLINK" | "EXISTS" => {
                let n = args.iter().skip(1).filter(|k| store.contains_key(*k)).count();
                if cmd != "EXISTS" {
                    for k in args.iter().skip(1) {
                        store.remove(k);
                    }
                }
                format!(":{n}\r\n").into_bytes().into()
            }
            "KEYS" => {
                let keys: Vec<&[u8]> = store.keys().map(|k| k.as_slice()).collect();
                array(&keys).into()
            }
            "DBSIZE" => format!(":{}\r\n", store.len()).into_bytes().into(),
            "FLUSHALL" | "FLUSHDB" => {
                store.clear();
                lit(b"+OK\r\n")
            }
            "SELECT" | "SAVE" | "SLAVEOF" | "REPLICAOF" | "CLIENT" | "READONLY" | "RESET" => lit(b"+OK\r\n"),
            "BGSAVE" => lit(b"+Background saving started\r\n"),
            "TYPE" => lit(b"+string\r\n"),
            "TTL" => lit(b":-1\r\n"),
            "COMMAND" => lit(b"*0\r\n"),
            "HELLO" => lit(b"-NOPROTO unsupported protocol version\r\n"),
            "MODULE" => lit(b"-ERR Error loading the extension. Please check the server logs.\r\n"),
            "EVAL" | "EVALSHA" | "SCRIPT" | "FUNCTION" => lit(b"-NOSCRIPT No matching script. Please use EVAL.\r\n"),
            "QUIT" => {
                out.extend_from_slice(b"+OK\r\n");
                return conn.write(&out).await;
            }
            _ => format!(
                "-ERR unknown command `{}`, with args beginning with: \r\n",
                cmd.chars().filter(|c| c.is_ascii_graphic()).take(64).collect::<String>()
            )
            .into_bytes()
            .into(),
        };
        out.extend_from_slice(&reply);
    }
    conn.write(&out).await
}

fn info(version: &str, host: &str, keys: usize) -> String {
    let _ = host;
    format!(
        "# Server\r\nredis_version:{version}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:5b8c7c6d3b1f0c0e\r\nredis_mode:standalone\r\nos:Linux 5.4.0-150-generic x86_64\r\narch_bits:64\r\nmultiplexing_api:epoll\r\ngcc_version:9.4.0\r\nprocess_id:1123\r\nrun_id:6a3b5d2c1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b\r\ntcp_port:6379\r\nuptime_in_seconds:1728032\r\nuptime_in_days:20\r\nexecutable:/usr/bin/redis-server\r\nconfig_file:/etc/redis/redis.conf\r\n\r\n# Clients\r\nconnected_clients:1\r\n\r\n# Memory\r\nused_memory:873992\r\nused_memory_human:853.51K\r\n\r\n# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\n\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n# Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n"
    )
}
