//! SSH and HTTPS driven by real clients: OpenSSH's `ssh` (passwords through
//! `sshpass`), `hydra ssh`, and `curl -k`.

use std::time::Duration;

use apiary_sensor::ServiceKind as K;

use crate::common::*;

const T: Duration = Duration::from_secs(30);

fn ssh_args<'a>(port: &'a str, key: &'a str, target: &'a str) -> Vec<&'a str> {
    vec![
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "PreferredAuthentications=publickey,password",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=no",
        "-i",
        key,
        "-p",
        port,
        target,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_passwords_keys_and_shell() {
    let (Some(ssh), Some(sshpass), Some(keygen)) = (tool("ssh"), tool("sshpass"), tool("ssh-keygen")) else { return };
    let s = TestSensor::start_with(&[K::Ssh], |c| {
        if let Some(svc) = c.services.get_mut(&K::Ssh) {
            svc.accept = vec!["root:toor".into()];
        }
    })
    .await;
    let port = s.port(K::Ssh).to_string();
    let key = s.dir.path().join("id_test");
    let o =
        run(&keygen, &["-q", "-t", "ed25519", "-N", "", "-C", "attacker@box", "-f", key.to_str().unwrap()], T).await;
    assert!(o.status.success(), "{}", out(&o));
    let key = key.to_str().unwrap();
    let ssh_s = ssh.to_str().unwrap();

    // 1. A wrong password (after the key is refused).
    let mut args = vec!["-p", "Winter2024!", ssh_s];
    args.extend(ssh_args(&port, key, "admin@127.0.0.1"));
    args.push("id");
    let o = run(&sshpass, &args, T).await;
    assert!(!o.status.success());
    assert!(out(&o).contains("Permission denied"), "{}", out(&o));

    // 2. An accepted login running a command: canned output, nothing run.
    let mut args = vec!["-p", "toor", ssh_s];
    args.extend(ssh_args(&port, key, "root@127.0.0.1"));
    args.push("uname -a; cat /etc/passwd");
    let o = run(&sshpass, &args, T).await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("Linux svr04"), "{}", out(&o));
    assert!(out(&o).contains("root:x:0:0"), "{}", out(&o));

    // 3. An interactive shell on a pty, commands typed on stdin.
    let mut args = vec!["-p", "toor", ssh_s, "-tt"];
    args.extend(ssh_args(&port, key, "root@127.0.0.1"));
    let o = run_stdin(&sshpass, &args, Some("whoami\n/bin/busybox HONEY\nexit\n"), T).await;
    let shell = out(&o);
    assert!(shell.contains("root@svr04:~# "), "{shell}");
    assert!(shell.contains("HONEY: applet not found"), "{shell}");

    let pubkey = std::fs::read_to_string(format!("{key}.pub")).unwrap();
    let fp = run(&keygen, &["-l", "-E", "sha256", "-f", &format!("{key}.pub")], T).await;
    let fingerprint = out(&fp).split_whitespace().nth(1).unwrap_or_default().to_owned();
    let ev = s
        .wait_for("ssh facts", |ev| {
            let f = facts(ev, "SSH");
            has_login(ev, "SSH", "admin", Some("Winter2024!"))
                && has_login(ev, "SSH", "root", Some("toor"))
                && f.iter().any(|f| f["command"] == "uname -a; cat /etc/passwd")
                && f.iter().any(|f| f["command"] == "/bin/busybox HONEY")
                && f.iter().any(|f| f["method"] == "publickey" && f["fingerprint"] == fingerprint.as_str())
        })
        .await;
    let f = facts(&ev, "SSH");
    let offered = f.iter().find(|f| f["method"] == "publickey").unwrap();
    assert_eq!(offered["username"], "admin");
    assert_eq!(offered["key_type"], "ssh-ed25519");
    assert!(pubkey.starts_with(offered["public_key"].as_str().unwrap().trim()), "{offered} vs {pubkey}");
    assert!(f
        .iter()
        .any(|f| f["type"] == "client" && f["version"].as_str().is_some_and(|v| v.starts_with("SSH-2.0-OpenSSH_"))));
    // The wire bytes: the server's version line in clear, then ciphertext.
    assert!(ev
        .iter()
        .any(|e| e["service"] == "SSH" && e["event"] == "TX" && text(e).starts_with("SSH-2.0-OpenSSH_8.9p1")));
    assert!(ev.iter().any(|e| e["service"] == "SSH" && e["event"] == "CONNECT"));
    assert_valid(&ev);

    // The host key is kept, private, and reused by the next start.
    let key_file = s.dir.path().join("ssh_host_ed25519_key");
    let before = std::fs::read(&key_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let dir = s.dir.path().to_owned();
    let TestSensor { sensor, dir: keep, .. } = s;
    sensor.unwrap().stop().await.unwrap();
    let again = apiary_sensor::start(config(&dir, &[K::Ssh])).await.unwrap();
    assert_eq!(std::fs::read(&key_file).unwrap(), before);
    again.stop().await.unwrap();
    drop(keep);
    assert_eq!(panics(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hydra_ssh() {
    let Some(hydra) = tool("hydra") else { return };
    let s = TestSensor::start_with(&[K::Ssh], |c| {
        if let Some(svc) = c.services.get_mut(&K::Ssh) {
            svc.accept = vec!["root:letmein".into()];
        }
    })
    .await;
    let words = s.dir.path().join("pw.txt");
    std::fs::write(&words, "123456\nadmin\nletmein\n").unwrap();
    let port = s.port(K::Ssh).to_string();
    let o = run(
        &hydra,
        &["-I", "-t", "1", "-w", "10", "-l", "root", "-P", words.to_str().unwrap(), "-s", &port, "127.0.0.1", "ssh"],
        Duration::from_secs(90),
    )
    .await;
    let report = out(&o);
    assert!(report.contains("login: root") && report.contains("password: letmein"), "{report}");
    let ev = s
        .wait_for("hydra's attempts", |ev| {
            ["123456", "admin", "letmein"].iter().all(|p| has_login(ev, "SSH", "root", Some(p)))
        })
        .await;
    assert!(facts(&ev, "SSH")
        .iter()
        .any(|f| f["type"] == "client" && f["version"].as_str().is_some_and(|v| v.contains("libssh"))));
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_https_self_signed() {
    let Some(curl) = tool("curl") else { return };
    let s = TestSensor::start(&[K::Https]).await;
    let port = s.port(K::Https);
    let base = format!("https://127.0.0.1:{port}");
    let o = run(&curl, &["-k", "-s", "-i", &format!("{base}/")], T).await;
    assert!(out(&o).contains("It works!"), "{}", out(&o));
    // Without -k curl refuses the self-signed certificate.
    let o = run(&curl, &["-s", "-o", "/dev/null", &format!("{base}/")], T).await;
    assert!(!o.status.success());
    // A lure by name: the SNI is kept, the login captured from the plaintext.
    let resolve = format!("www.victim.test:{port}:127.0.0.1");
    let url = format!("https://www.victim.test:{port}/wp-login.php");
    let o =
        run(&curl, &["-k", "-s", "--resolve", &resolve, "-d", "log=admin&pwd=hunter2&wp-submit=Log+In", &url], T).await;
    assert!(out(&o).contains("incorrect"), "{}", out(&o));
    let ev = s
        .wait_for("https facts", |ev| {
            has_login(ev, "HTTPS", "admin", Some("hunter2"))
                && facts(ev, "HTTPS").iter().any(|f| f["type"] == "tls" && f["sni"] == "www.victim.test")
        })
        .await;
    assert!(ev.iter().any(|e| e["service"] == "HTTPS" && e["event"] == "RX" && text(e).starts_with("GET / HTTP/1.1")));
    assert!(ev.iter().any(|e| e["service"] == "HTTPS" && e["event"] == "TX" && text(e).contains("It works!")));
    // Plain HTTP to the TLS port: recorded as a failed handshake.
    let o = run(&curl, &["-s", "-m", "5", &format!("http://127.0.0.1:{port}/")], T).await;
    let _ = o;
    s.wait_for("tls error", |ev| facts(ev, "HTTPS").iter().any(|f| f["type"] == "tls" && f["error"].is_string())).await;
    assert_valid(&s.events());
    let cert = std::fs::read(s.dir.path().join("https_cert.pem")).unwrap();
    assert!(cert.starts_with(b"-----BEGIN CERTIFICATE-----"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmap_names_ssh_https_ldap() {
    let Some(nmap) = tool("nmap") else { return };
    let kinds = [K::Ssh, K::Https, K::Ldap];
    let s = TestSensor::start(&kinds).await;
    // Default intensity: nmap's LDAP probes are rarity 6, beyond --version-light.
    let ports: Vec<String> = kinds.iter().map(|k| s.port(*k).to_string()).collect();
    let o = run(&nmap, &["-n", "-Pn", "-sV", "-p", &ports.join(","), "127.0.0.1"], Duration::from_secs(240)).await;
    let report = out(&o);
    for (k, expect) in kinds.iter().zip(["ssh", "http", "ldap"]) {
        let line = report.lines().find(|l| l.starts_with(&format!("{}/tcp", s.port(*k)))).unwrap_or("");
        assert!(line.contains(expect), "nmap did not see {expect} on {k:?}: {line:?}\n{report}");
    }
    let ssh_line = report.lines().find(|l| l.starts_with(&format!("{}/tcp", s.port(K::Ssh)))).unwrap_or("");
    assert!(ssh_line.contains("OpenSSH 8.9p1"), "{ssh_line}");
    assert_valid(&s.events());
    s.stop().await;
}
