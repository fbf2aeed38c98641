//! Telnet: a BusyBox-style login and a fake shell.
//!
//! Options negotiated (WILL ECHO, WILL SGA) are the ones a Linux telnetd
//! sends, so clients switch to character mode and password echo is off.
//! Logins are captured as INFO `login`; accepted ones (per `accept`) reach a
//! shell that records each command as INFO `command` and answers a few of the
//! probes bots use (`/bin/busybox XYZ` → "XYZ: applet not found", `uname`,
//! `cat /proc/cpuinfo`). Nothing is ever run.
//! Options: `banner` (text before the login prompt), `hostname`, `accept`.

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const IAC: u8 = 255;
const MAX_LINE: usize = 1024;
const MAX_TRIES: usize = 3;
const MAX_COMMANDS: usize = 500;
const FAIL_DELAY: std::time::Duration = std::time::Duration::from_millis(1000);

/// Strips telnet commands and assembles lines, across reads.
#[derive(Default)]
struct LineReader {
    state: State,
    line: Vec<u8>,
    lines: std::collections::VecDeque<Vec<u8>>,
    last_cr: bool,
}

#[derive(Default, PartialEq)]
enum State {
    #[default]
    Data,
    Iac,
    Opt,
    Sub,
    SubIac,
}

impl LineReader {
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match self.state {
                State::Data => match b {
                    IAC => self.state = State::Iac,
                    b'\r' | b'\n' => {
                        // CR LF, CR NUL and bare LF all end one line.
                        if !(b == b'\n' && self.last_cr) {
                            self.lines.push_back(std::mem::take(&mut self.line));
                        }
                        self.last_cr = b == b'\r';
                        continue;
                    }
                    0 if self.last_cr => {}
                    // Backspace / DEL edit the line as a terminal would.
                    8 | 127 => {
                        self.line.pop();
                    }
                    _ => {
                        if self.line.len() >= MAX_LINE {
                            return false;
                        }
                        self.line.push(b);
                    }
                },
                State::Iac => {
                    self.state = match b {
                        251..=254 => State::Opt,
                        250 => State::Sub,
                        IAC => {
                            self.line.push(IAC);
                            State::Data
                        }
                        _ => State::Data,
                    }
                }
                State::Opt => self.state = State::Data,
                State::Sub => {
                    if b == IAC {
                        self.state = State::SubIac
                    }
                }
                State::SubIac => self.state = if b == 240 { State::Data } else { State::Sub },
            }
            self.last_cr = false;
        }
        true
    }
}

struct Telnet<'a> {
    conn: &'a mut Conn,
    reader: LineReader,
}

impl Telnet<'_> {
    async fn line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(l) = self.reader.lines.pop_front() {
                return Ok(Some(l));
            }
            let Some(bytes) = self.conn.read_some().await? else { return Ok(None) };
            if !self.reader.feed(&bytes) {
                return Ok(None);
            }
        }
    }
}

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    let host = cfg.hostname();
    // DO ECHO, DO NAWS, DO LFLOW, WILL ECHO, WILL SGA: BusyBox telnetd's
    // opening, byte for byte, so fingerprinting tools take us for one.
    // Sent together with the first prompt: one segment (and one TX event)
    // instead of three.
    let mut opening = vec![IAC, 253, 1, IAC, 253, 31, IAC, 253, 33, IAC, 251, 1, IAC, 251, 3];
    if let Some(b) = &cfg.banner {
        opening.extend_from_slice(format!("{}\r\n", b.replace('\n', "\r\n")).as_bytes());
    }
    let mut t = Telnet { conn, reader: LineReader::default() };
    let mut user = Vec::new();
    let mut logged_in = false;
    let mut tries = 0;
    // Empty user names re-prompt without costing a try, as login(1) does;
    // the connection's limits bound how long that can go on.
    while tries < MAX_TRIES {
        let mut prompt = std::mem::take(&mut opening);
        prompt.extend_from_slice(host.as_bytes());
        prompt.extend_from_slice(b" login: ");
        t.conn.write(&prompt).await?;
        let Some(u) = t.line().await? else { return Ok(()) };
        if u.is_empty() {
            continue;
        }
        tries += 1;
        t.conn.write(b"Password: ").await?;
        let Some(p) = t.line().await? else { return Ok(()) };
        t.conn.write(b"\r\n").await?;
        t.conn.info(Fact::login(&u, &p).with("method", "password")).await;
        let (us, ps) = (String::from_utf8_lossy(&u), String::from_utf8_lossy(&p));
        if cfg.accepts(&us, &ps) {
            user = u;
            logged_in = true;
            break;
        }
        // login(1) pauses before saying no; brute-forcers time their next
        // attempt on that rhythm (hydra loses step without it).
        tokio::time::sleep(FAIL_DELAY).await;
        t.conn.write(b"Login incorrect\r\n").await?;
    }
    if !logged_in {
        return Ok(());
    }
    let user = String::from_utf8_lossy(&user).into_owned();
    let root = user == "root";
    t.conn.write(b"\r\n\r\nBusyBox v1.31.1 () built-in shell (ash)\r\n\r\n").await?;
    for _ in 0..MAX_COMMANDS {
        let prompt = if root { format!("{user}@{host}:~# ") } else { format!("{user}@{host}:~$ ") };
        t.conn.write(prompt.as_bytes()).await?;
        let Some(line) = t.line().await? else { return Ok(()) };
        let text = String::from_utf8_lossy(&line).trim().to_owned();
        if text.is_empty() {
            continue;
        }
        t.conn.info(Fact::command(&text)).await;
        let mut out = String::new();
        for cmd in text.split([';', '\n']).flat_map(|c| c.split("&&")).flat_map(|c| c.split("||")) {
            match respond(cmd.trim(), &user, host) {
                Reply::Exit => {
                    t.conn.write(out.as_bytes()).await?;
                    return Ok(());
                }
                Reply::Text(s) => out.push_str(&s),
            }
        }
        t.conn.write(out.replace('\n', "\r\n").as_bytes()).await?;
    }
    Ok(())
}

pub(crate) enum Reply {
    Text(String),
    Exit,
}

/// Canned answers; the point is to keep bots talking, not to be a shell.
pub(crate) fn respond(cmd: &str, user: &str, host: &str) -> Reply {
    let mut words = cmd.split_whitespace();
    let Some(first) = words.next() else { return Reply::Text(String::new()) };
    let prog = first.rsplit('/').next().unwrap_or(first);
    let text = match prog {
        "exit" | "logout" | "quit" => return Reply::Exit,
        "enable" | "system" | "shell" | "sh" | "bash" | "linuxshell" | "cd" | "export" | "echo" if words.clone().next().is_none() => String::new(),
        "echo" => {
            let rest: Vec<&str> = words.filter(|w| !w.starts_with('-')).collect();
            format!("{}\n", rest.join(" ").trim_matches(['"', '\'']))
        }
        "busybox" => match words.next() {
            Some(applet) if !applet.is_empty() => format!("{applet}: applet not found\n"),
            _ => "BusyBox v1.31.1 () multi-call binary.\n".into(),
        },
        "whoami" => format!("{user}\n"),
        "id" => if user == "root" { "uid=0(root) gid=0(root) groups=0(root)\n".into() } else { format!("uid=1000({user}) gid=1000({user}) groups=1000({user})\n") },
        "uname" => {
            if cmd.contains("-a") {
                format!("Linux {host} 4.14.180 #1 SMP Mon Jun 1 12:00:00 UTC 2020 armv7l GNU/Linux\n")
            } else if cmd.contains("-m") {
                "armv7l\n".into()
            } else {
                "Linux\n".into()
            }
        }
        "pwd" => "/root\n".into(),
        "hostname" => format!("{host}\n"),
        "ls" => "bin  dev  etc  lib  mnt  proc  root  sbin  sys  tmp  usr  var\n".into(),
        "nproc" => "4\n".into(),
        "cat" => match words.next() {
            Some("/proc/cpuinfo") => "processor\t: 0\nmodel name\t: ARMv7 Processor rev 5 (v7l)\nBogoMIPS\t: 38.40\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm\nCPU implementer\t: 0x41\nCPU architecture: 7\n".into(),
            Some("/etc/passwd") => "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n".into(),
            Some(f) => format!("cat: {f}: No such file or directory\n"),
            None => String::new(),
        },
        "wget" | "curl" | "tftp" | "ftpget" => format!("{prog}: bad address\n"),
        "chmod" | "rm" | "mkdir" | "cp" | "mv" | "kill" | "pkill" | "killall" | "ulimit" | "crontab" | "history" | "unset" | "w" | "touch" | "ps" | "free" | "uptime" | "df" => String::new(),
        _ => format!("-sh: {prog}: not found\n"),
    };
    Reply::Text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_negotiation_and_splits_lines() {
        let mut r = LineReader::default();
        assert!(r.feed(&[IAC, 253, 1, b'r', b'o', IAC, 250, 31, 0, 80, IAC, 240, b'o', b't', b'\r', 0]));
        assert!(r.feed(b"pa\x7fass\r\nx\n"));
        let lines: Vec<_> = r.lines.into_iter().collect();
        assert_eq!(lines, vec![b"root".to_vec(), b"pass".to_vec(), b"x".to_vec()]);
    }

    #[test]
    fn never_panics_on_noise() {
        let mut r = LineReader::default();
        for i in 0..5000u32 {
            let _ = r.feed(&[(i * 7919 % 256) as u8, IAC, (i % 256) as u8]);
            r.lines.clear();
        }
    }

    #[test]
    fn busybox_probe() {
        match respond("/bin/busybox ECCHI", "root", "h") {
            Reply::Text(t) => assert_eq!(t, "ECCHI: applet not found\n"),
            Reply::Exit => panic!(),
        }
    }
}
