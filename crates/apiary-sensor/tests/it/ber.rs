//! SNMP (snmpget) and LDAP (ldapsearch), the BER services, plus the Random
//! and Hash responders over raw sockets.

use std::time::Duration;

use apiary_sensor::ServiceKind as K;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpget_v1_and_v2c() {
    let Some(snmpget) = tool("snmpget") else { return };
    let s = TestSensor::start(&[K::Snmp]).await;
    let target = format!("127.0.0.1:{}", s.port(K::Snmp));
    let o = run(
        &snmpget,
        &["-v2c", "-c", "s3cr3t", "-t", "3", "-r", "0", "-On", &target, "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.5.0"],
        T,
    )
    .await;
    let text = out(&o);
    assert!(text.contains(".1.3.6.1.2.1.1.1.0 = STRING: \"Linux svr04"), "{text}");
    assert!(text.contains(".1.3.6.1.2.1.1.5.0 = STRING: \"svr04\""), "{text}");
    let o = run(&snmpget, &["-v1", "-c", "public", "-t", "3", "-r", "0", "-On", &target, "1.3.6.1.2.1.1.3.0"], T).await;
    assert!(out(&o).contains("Timeticks"), "{}", out(&o));
    let o =
        run(&snmpget, &["-v2c", "-c", "public", "-t", "3", "-r", "0", "-On", &target, "1.3.6.1.4.1.9.9.9.0"], T).await;
    assert!(out(&o).contains("No Such Object"), "{}", out(&o));
    let ev = s
        .wait_for("snmp facts", |ev| {
            let f = facts(ev, "SNMP.udp");
            f.iter().any(|f| f["community"] == "s3cr3t" && f["version"] == "2c" && f["oids"][1] == "1.3.6.1.2.1.1.5.0")
                && f.iter().any(|f| f["community"] == "public" && f["version"] == "1")
        })
        .await;
    assert!(ev.iter().filter(|e| e["service"] == "SNMP.udp").all(|e| e["protocol"] == "UDP"));
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldapsearch_binds_and_root_dse() {
    let Some(ldapsearch) = tool("ldapsearch") else { return };
    let s = TestSensor::start_with(&[K::Ldap], |c| {
        if let Some(svc) = c.services.get_mut(&K::Ldap) {
            svc.accept = vec!["cn=admin,dc=svr04,dc=local:admin".into()];
        }
    })
    .await;
    let uri = format!("ldap://127.0.0.1:{}", s.port(K::Ldap));
    let base = ["-x", "-o", "nettimeout=5", "-H", &uri];
    let with = |extra: &[&'static str]| {
        let mut a: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let args = with(&["-D", "cn=admin,dc=example,dc=com", "-w", "P@ssw0rd", "-b", "dc=example,dc=com"]);
    let o = run(&ldapsearch, &args.iter().map(String::as_str).collect::<Vec<_>>(), T).await;
    assert!(out(&o).contains("Invalid credentials (49)"), "{}", out(&o));
    let args = with(&["-D", "cn=admin,dc=svr04,dc=local", "-w", "admin", "-b", "dc=svr04,dc=local", "(uid=*)"]);
    let o = run(&ldapsearch, &args.iter().map(String::as_str).collect::<Vec<_>>(), T).await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("result: 0 Success"), "{}", out(&o));
    let args = with(&["-s", "base", "-b", "", "+", "*"]);
    let o = run(&ldapsearch, &args.iter().map(String::as_str).collect::<Vec<_>>(), T).await;
    assert!(out(&o).contains("namingContexts: dc=svr04,dc=local"), "{}", out(&o));
    let ev = s
        .wait_for("ldap facts", |ev| {
            has_login(ev, "LDAP", "cn=admin,dc=example,dc=com", Some("P@ssw0rd"))
                && has_login(ev, "LDAP", "cn=admin,dc=svr04,dc=local", Some("admin"))
                && facts(ev, "LDAP").iter().any(|f| f["type"] == "ldap_search" && f["base"] == "dc=svr04,dc=local")
        })
        .await;
    assert_valid(&ev);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_hash_responders() {
    let s = TestSensor::start(&[K::Random, K::Hash]).await;
    let mut c = TcpStream::connect(("127.0.0.1", s.port(K::Hash))).await.unwrap();
    c.write_all(b"hello\n").await.unwrap();
    let mut buf = [0u8; 33];
    tokio::time::timeout(T, c.read_exact(&mut buf)).await.unwrap().unwrap();
    // md5("hello\n")
    assert_eq!(&buf, b"b1946ac92492d2347c6235b4d2611184\n");
    drop(c);
    let mut c = TcpStream::connect(("127.0.0.1", s.port(K::Random))).await.unwrap();
    c.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05]).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(T, c.read(&mut buf)).await.unwrap().unwrap();
    assert!((1..=10).contains(&n), "{n}");
    drop(c);
    let ev = s
        .wait_for("responder events", |ev| {
            ["Random", "Hash"].iter().all(|svc| ev.iter().any(|e| e["service"] == *svc && e["event"] == "TX"))
        })
        .await;
    assert!(ev.iter().any(|e| e["service"] == "Hash" && e["event"] == "RX" && text(e) == "hello\n"));
    assert_valid(&ev);
    s.stop().await;
}
