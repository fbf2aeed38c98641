//! The embedded store on a real database file: pruning keeps rollups,
//! idempotency holds across reopen, paging is exact.

use std::net::IpAddr;

use apiary_model::time::{day_number, now_ms, MS_PER_DAY};
use apiary_model::{Event, EventKind, Origin, Protocol};
use apiary_store::{HostFilter, NewAccount, Role, SqliteOptions, SqliteStore, Store};

fn event(id: &str, ts_ms: i64, host: &str) -> Event {
    Event {
        id: id.into(),
        node: "3386e49be694e179a429344f745703d6".into(),
        session: "s-1".into(),
        ts_ms,
        protocol: Protocol::Tcp,
        kind: EventKind::Rx,
        service: "SSH".into(),
        local_host: IpAddr::from([10, 0, 0, 1]),
        local_port: 22,
        remote_host: host.parse().unwrap(),
        remote_port: 40000,
        data: id.as_bytes().to_vec(),
        origin: Origin::default(),
        facts: Default::default(),
    }
}

/// An unlimited account of `role` in `store`.
fn account(store: &SqliteStore, role: Role) -> apiary_store::Account {
    store.create_account(&NewAccount { name: "a".into(), monthly_quota: None, role }).unwrap().0
}

fn open(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(dir, SqliteOptions::default()).unwrap()
}

/// Two stores open on one data directory, as two processes would have it,
/// and an account made by the first.
fn two_openers(dir: &std::path::Path) -> (SqliteStore, apiary_store::Account, SqliteStore) {
    let first = open(dir);
    let acct = account(&first, Role::AllSensors);
    let second = open(dir);
    (first, acct, second)
}

#[test]
fn pruning_drops_old_raw_events_and_keeps_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let acct = account(&store, Role::AllSensors);
    let now = now_ms();
    let old = now - 40 * MS_PER_DAY;
    let old_events: Vec<Event> = (0..2500).map(|i| event(&format!("old{i}"), old + i, "1.2.3.4")).collect();
    let new_events: Vec<Event> = (0..10).map(|i| event(&format!("new{i}"), now - 1000 + i, "1.2.3.4")).collect();
    assert_eq!(store.ingest(acct.id, None, old_events.clone()).unwrap().accepted, 2500);
    assert_eq!(store.ingest(acct.id, None, new_events).unwrap().accepted, 10);
    let (old_day, today) = (day_number(old), day_number(now));
    assert_eq!(store.sensor_data_count(old_day, None).unwrap(), 2500);

    let deleted = store.prune_events(today - 30).unwrap();
    assert!(deleted > 0);
    assert!(store.sensor_data(old_day, None, 0, 1000).unwrap().is_empty());
    assert_eq!(store.sensor_data_count(old_day, None).unwrap(), 0, "counts agree with what can be paged");
    assert_eq!(store.sensor_data(today, None, 0, 1000).unwrap().len(), 10);
    // Rollups are kept forever.
    let history = store.ip_history("1.2.3.4".parse().unwrap()).unwrap();
    assert_eq!(history.iter().find(|r| r.day == old_day).map(|r| r.event_count), Some(2500));
    // Nothing left to prune is a no-op.
    assert_eq!(store.prune_events(today - 30).unwrap(), 0);
    // The idempotency keys of the days kept stay: a re-delivery of today's
    // events is recognised, after a reopen too.
    store.close().unwrap();
    let store = open(dir.path());
    let again: Vec<Event> = (0..10).map(|i| event(&format!("new{i}"), now - 1000 + i, "1.2.3.4")).collect();
    let outcome = store.ingest(acct.id, None, again).unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 10));
}

#[test]
fn ids_never_repeat_and_duplicates_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let batch: Vec<Event> = (0..1500).map(|i| event(&format!("e{i}"), now - 5000 + i, "5.6.7.8")).collect();
    let (acct, last_id) = {
        let store = open(dir.path());
        let acct = account(&store, Role::Community);
        assert_eq!(store.ingest(acct.id, None, batch.clone()).unwrap().accepted, 1500);
        let page = store.sensor_data(day_number(now), Some(acct.id), 0, 2000).unwrap();
        let last = page.last().unwrap().id;
        store.close().unwrap();
        (acct, last)
    };
    let store = open(dir.path());
    // Half old, half new: only the new half is stored, with ids above the old ones.
    let mut mixed = batch[750..].to_vec();
    mixed.extend((0..750).map(|i| event(&format!("f{i}"), now - 2000 + i, "5.6.7.8")));
    let outcome = store.ingest(acct.id, None, mixed).unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (750, 750));
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.sensor_data(day_number(now), Some(acct.id), after, 1000).unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        all.extend(page);
    }
    assert_eq!(all.len(), 2250);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "strictly increasing, no repeats");
    assert!(all[1500..].iter().all(|e| e.id > last_id));
    assert_eq!(all[1500].data, b"f0");
}

/// An RX event carrying the facts ingest would derive from it.
fn with_facts(mut e: Event, values: &[(Option<&'static str>, &str)], cves: &[&'static str]) -> Event {
    e.facts = apiary_model::PayloadFacts {
        values: values.iter().map(|(a, v)| apiary_model::PayloadValue::new(*a, (*v).to_owned(), false)).collect(),
        cves: cves.to_vec(),
    };
    e
}

#[test]
fn payload_history_and_cves_are_kept_forever_once_per_day() {
    use apiary_store::{Page, PayloadSelect};
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let old = now - 40 * MS_PER_DAY;
    let all = Page { offset: 0, limit: 1000 };
    let acct = {
        let store = open(dir.path());
        let acct = account(&store, Role::Community);
        let path = [(Some("http-path"), "/cgi-bin/luci")];
        let mut batch: Vec<Event> = (0..50)
            .map(|i| with_facts(event(&format!("o{i}"), old + i, &format!("10.0.0.{}", i % 5)), &path, &[]))
            .collect();
        batch.push(with_facts(event("x", old + 99, "10.0.0.9"), &[(None, "\\x00weird")], &["CVE-2023-1389"]));
        assert_eq!(store.ingest(acct.id, None, batch.clone()).unwrap().accepted, 51);
        assert_eq!(store.ingest(acct.id, None, batch).unwrap().duplicates, 51);
        store.prune_events(day_number(now) - 30).unwrap();
        store.close().unwrap();
        acct
    };
    // After pruning the raw events and reopening, the history is all there.
    let store = open(dir.path());
    let today_batch = vec![with_facts(event("t", now, "10.0.0.1"), &[(Some("http-path"), "/cgi-bin/luci")], &[])];
    store.ingest(acct.id, None, today_batch).unwrap();
    let (old_day, today) = (day_number(old), day_number(now));
    let md5 = apiary_model::PayloadValue::new(None, "/cgi-bin/luci".into(), false).md5;
    let records = store.payload_records(&PayloadSelect::Hash(md5), all).unwrap();
    assert_eq!(records.iter().map(|r| r.day).collect::<Vec<_>>(), vec![old_day, today], "one record per day");
    assert_eq!(records[0].attribute.as_deref(), Some("http-path"));
    let hosts = store.value_hosts(md5, old_day, today, all).unwrap();
    assert_eq!(hosts.len(), 6, "five hosts on the old day, one today: {hosts:?}");
    let whole = store.payload_records(&PayloadSelect::Service("ssh".into()), all).unwrap();
    assert!(whole.iter().any(|r| r.attribute.is_none() && r.value == "\\x00weird"));
    assert_eq!(store.payload_services().unwrap(), vec!["SSH".to_owned()]);
    let sightings = store.host_cves("10.0.0.9".parse().unwrap()).unwrap();
    assert_eq!(sightings.len(), 1);
    assert_eq!((sightings[0].day, sightings[0].cve.as_str()), (old_day, "CVE-2023-1389"));
    assert_eq!(store.cve_hosts("CVE-2023-1389", all).unwrap().len(), 1);
    let years = store.payload_hosts_by_year(3).unwrap();
    assert!(years.iter().all(|y| y.hosts.len() <= 3));
    assert!(years.iter().any(|y| y.truncated));
}

#[test]
fn facts_lost_with_a_failed_delivery_arrive_with_its_retry() {
    use apiary_store::{Page, PayloadSelect};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let acct = account(&store, Role::Community);
    let now = now_ms();
    // The events were stored but their facts were not (the delivery failed
    // between the two commits, so the sensor sends the batch again).
    let bare: Vec<Event> = (0..3).map(|i| event(&format!("r{i}"), now + i, "192.0.2.4")).collect();
    store.ingest(acct.id, None, bare.clone()).unwrap();
    let retry: Vec<Event> =
        bare.into_iter().map(|e| with_facts(e, &[(Some("shell-command"), "uname -a")], &["CVE-2014-6271"])).collect();
    let outcome = store.ingest(acct.id, None, retry).unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 3), "the events are not stored twice");
    let md5 = apiary_model::PayloadValue::new(None, "uname -a".into(), false).md5;
    let records = store.payload_records(&PayloadSelect::Hash(md5), Page { offset: 0, limit: 10 }).unwrap();
    assert_eq!(records.len(), 1, "but their facts are recorded");
    assert_eq!(store.host_cves("192.0.2.4".parse().unwrap()).unwrap().len(), 1);
}

/// Per-host reads are kept in memory (`sqlite/host_cache.rs`); a commit
/// that changes a host's history or CVE sightings must show in the very
/// next read, whichever spelling of the address asks.
#[test]
fn per_host_reads_see_each_commit_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let acct = account(&store, Role::Community);
    let now = now_ms();
    let host: IpAddr = "198.51.100.7".parse().unwrap();
    let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
    let count = |ip| store.ip_history(ip).unwrap().iter().map(|r| r.event_count).sum::<u64>();
    assert_eq!(count(host), 0);
    assert!(store.host_cves(host).unwrap().is_empty());
    for round in 1..=3u64 {
        let batch: Vec<Event> = (0..round)
            .map(|i| {
                let e = event(&format!("r{round}-{i}"), now - 1000 + i as i64, "198.51.100.7");
                with_facts(e, &[], if round == 3 { &["CVE-2021-44228"] } else { &[] })
            })
            .collect();
        store.ingest(acct.id, None, batch).unwrap();
        let expected = round * (round + 1) / 2;
        assert_eq!(count(host), expected, "round {round}");
        assert_eq!(count(mapped), expected, "round {round}, IPv4-mapped spelling");
    }
    let cves = store.host_cves(mapped).unwrap();
    assert_eq!(cves.iter().map(|c| c.cve.as_str()).collect::<Vec<_>>(), vec!["CVE-2021-44228"]);
    // Another host's history is untouched and still right.
    assert_eq!(count("198.51.100.8".parse().unwrap()), 0);
}

/// What the rollups say about the events of `rollups_a_killed_run...`.
#[derive(Debug, PartialEq)]
struct Rolled {
    history: [u64; 2],
    events_today: u64,
    month: (u64, u64),
    bad_hosts: Vec<(String, u64)>,
}

/// Rollups may trail the stored events by a moment under load
/// (`sqlite/rollup.rs`); a run killed in between leaves events whose
/// increments were never written. Opening the store rebuilds exactly those,
/// once.
#[test]
fn rollups_a_killed_run_never_wrote_are_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let acct = account(&store, Role::AllSensors);
    let now = now_ms();
    let today = day_number(now);
    let batch = |prefix: &str, n: i64, host: &str| -> Vec<Event> {
        (0..n).map(|i| event(&format!("{prefix}{i}"), now - 5000 + i, host)).collect()
    };
    store.ingest(acct.id, None, batch("a", 300, "192.0.2.1")).unwrap();
    store.ingest(acct.id, None, batch("b", 1200, "192.0.2.2")).unwrap();
    store.close().unwrap();
    drop(store);

    let counts = |store: &SqliteStore| {
        let history = |host: &str| store.ip_history(host.parse().unwrap()).unwrap().iter().map(|r| r.event_count).sum();
        let mut bad: Vec<(String, u64)> = store
            .bad_hosts(&HostFilter::default(), now - 3_600_000)
            .unwrap()
            .into_iter()
            .map(|h| (h.host, h.count))
            .collect();
        bad.sort();
        let stats = store.month_stats(None).unwrap().unwrap();
        Rolled {
            history: [history("192.0.2.1"), history("192.0.2.2")],
            events_today: store.sensor_data_count(today, None).unwrap(),
            month: (stats.total_events, stats.total_remote_hosts),
            bad_hosts: bad,
        }
    };
    let expected = Rolled {
        history: [300, 1200],
        events_today: 1500,
        month: (1500, 2),
        bad_hosts: vec![("192.0.2.1".into(), 300), ("192.0.2.2".into(), 1200)],
    };
    assert_eq!(counts(&open(dir.path())), expected);

    // What a kill leaves: every event stored, none of its increments.
    let db = rusqlite::Connection::open(dir.path().join("rollups.db")).unwrap();
    db.execute_batch(
        "DELETE FROM bad_host_hour; DELETE FROM service_hour; DELETE FROM ip_day;
         DELETE FROM days; DELETE FROM day_owner; DELETE FROM month_stats; DELETE FROM month_service;
         DELETE FROM month_host; UPDATE rollup_meta SET value = 0 WHERE key = 'rollup_hwm';",
    )
    .unwrap();
    drop(db);
    let store = open(dir.path());
    assert_eq!(counts(&store), expected, "rebuilt from the stored events");
    store.close().unwrap();
    drop(store);
    assert_eq!(counts(&open(dir.path())), expected, "and only once");
}

/// Two processes on one data directory (`apiary ingest` beside a running
/// server): each keeps rollup increments of its own and may replay the
/// other's at open (`sqlite/rollup.rs`). Whatever the interleaving, every
/// event is rolled up exactly once.
#[test]
fn two_writers_on_one_database_roll_every_event_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let (first, acct, second) = two_openers(dir.path());
    let now = now_ms();
    let host = "198.51.100.20";
    let mut expected = 0;
    for round in 0..6i64 {
        let store = if round % 2 == 0 { &first } else { &second };
        let n = 100 + round * 37;
        let batch: Vec<Event> = (0..n).map(|i| event(&format!("w{round}-{i}"), now - 9000 + i, host)).collect();
        assert_eq!(store.ingest(acct.id, None, batch).unwrap().accepted, n as u64);
        expected += n as u64;
        if round == 3 {
            // A third opener replays whatever is not rolled up yet.
            open(dir.path()).close().unwrap();
        }
    }
    first.close().unwrap();
    second.close().unwrap();
    let store = open(dir.path());
    let history: u64 = store.ip_history(host.parse().unwrap()).unwrap().iter().map(|r| r.event_count).sum();
    assert_eq!(history, expected);
    assert_eq!(store.sensor_data_count(day_number(now), None).unwrap(), expected);
    assert_eq!(store.month_stats(None).unwrap().map(|m| (m.total_events, m.total_remote_hosts)), Some((expected, 1)));
}

/// While batches keep coming, the writer keeps their rollup increments in
/// memory (`sqlite/writer.rs`); every read of rollups must still count
/// every event already answered.
#[test]
fn rollups_count_every_answered_batch_even_while_batches_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let acct = account(&store, Role::AllSensors);
    let now = now_ms();
    let host = "203.0.113.9";
    let mut sent = 0u64;
    for round in 0..5 {
        // Back to back: after the first, each batch comes within the
        // writer's idle gap of the one before, so its rollups are held.
        let batch: Vec<Event> = (0..200).map(|i| event(&format!("r{round}-{i}"), now - 9000 + i, host)).collect();
        store.ingest(acct.id, None, batch).unwrap();
        sent += 200;
        let since = now - 3_600_000;
        let bad = store.bad_hosts(&HostFilter::default(), since).unwrap();
        assert_eq!(bad.iter().find(|h| h.host == host).map(|h| h.count), Some(sent), "bad hosts, round {round}");
        let history: u64 = store.ip_history(host.parse().unwrap()).unwrap().iter().map(|r| r.event_count).sum();
        assert_eq!(history, sent, "IP history, round {round}");
        let services = store.services(since).unwrap();
        assert_eq!(services.iter().map(|s| s.count).sum::<u64>(), sent, "services, round {round}");
        assert_eq!(store.sensor_data_count(day_number(now), None).unwrap(), sent, "count, round {round}");
        assert_eq!(store.month_stats(None).unwrap().map(|m| m.total_events), Some(sent), "stats, round {round}");
        // The next batch follows at once, with no read in between.
        let batch: Vec<Event> = (0..100).map(|i| event(&format!("q{round}-{i}"), now - 8000 + i, host)).collect();
        store.ingest(acct.id, None, batch).unwrap();
        sent += 100;
    }
    assert_eq!(store.month_stats(None).unwrap().map(|m| m.total_events), Some(sent));
}

/// Who sent what is logged with each commit and folded into the tables
/// readers use later (`sqlite/payload.rs`); a read must still see every
/// answered batch, by value, by host and by year, while batches keep coming.
#[test]
fn who_sent_what_shows_every_answered_batch_even_while_batches_keep_coming() {
    use apiary_store::Page;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let acct = account(&store, Role::Community);
    let now = now_ms();
    let today = day_number(now);
    let all = Page { offset: 0, limit: 10_000 };
    let path = |round: usize| format!("/probe/{round}");
    let md5 = |round: usize| apiary_model::PayloadValue::new(Some("http-path"), path(round), false).md5;
    for round in 0..5usize {
        let batch: Vec<Event> = (0..50)
            .map(|i| {
                let e =
                    event(&format!("p{round}-{i}"), now - 9000 + i as i64, &format!("198.51.100.{}", round * 50 + i));
                with_facts(e, &[(Some("http-path"), &path(round))], &[])
            })
            .collect();
        store.ingest(acct.id, None, batch).unwrap();
        let hosts = store.value_hosts(md5(round), today, today, all).unwrap();
        assert_eq!(hosts.len(), 50, "hosts of this round's value, round {round}");
        let sent = store.host_values(format!("198.51.100.{}", round * 50 + 49).parse().unwrap(), all).unwrap();
        assert_eq!(sent.iter().map(|d| d.md5).collect::<Vec<_>>(), vec![md5(round)], "round {round}");
        let years = store.payload_hosts_by_year(10_000).unwrap();
        assert_eq!(years.iter().map(|y| y.hosts.len()).sum::<usize>(), 50 * (round + 1), "round {round}");
    }
}

/// Two processes on one data directory (`apiary ingest` beside a server)
/// each log who sent what and fold it themselves: a fold deletes only its
/// own log rows, never the other's, which stay until their owner folds them.
#[test]
fn a_fold_leaves_the_other_processs_logged_facts() {
    use apiary_store::Page;
    let dir = tempfile::tempdir().unwrap();
    // Both hold their facts until asked (no fold after an idle gap).
    let bulk = SqliteOptions { bulk_load: true, ..SqliteOptions::default() };
    let server = SqliteStore::open(dir.path(), bulk.clone()).unwrap();
    let acct = account(&server, Role::Community);
    let loader = SqliteStore::open(dir.path(), bulk).unwrap();
    let now = now_ms();
    let send = |store: &SqliteStore, id: &str, host: &str| {
        let e = with_facts(event(id, now - 1000, host), &[(Some("http-path"), "/x")], &[]);
        store.ingest(acct.id, None, vec![e]).unwrap();
    };
    send(&server, "a", "192.0.2.1");
    send(&loader, "b", "192.0.2.2");
    send(&server, "c", "192.0.2.3");
    let logged = || {
        let conn = rusqlite::Connection::open(dir.path().join("payloads.db")).unwrap();
        conn.query_row("SELECT count(*) FROM host_fact_log", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    // A bulk load's ingest returns once the events are committed; its facts
    // are logged a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while logged() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(logged(), 3);
    // The server's read folds its two rows, logged before and after the loader's.
    let all = Page { offset: 0, limit: 100 };
    assert_eq!(server.host_values("192.0.2.3".parse().unwrap(), all).unwrap().len(), 1);
    assert_eq!(logged(), 1, "the loader's row stays logged until the loader folds it");
    loader.close().unwrap();
    assert_eq!(logged(), 0);
    assert_eq!(server.host_values("192.0.2.2".parse().unwrap(), all).unwrap().len(), 1);
}

/// The writer remembers which of the month's hosts it stored and skips
/// their rows afterwards (`sqlite/rollup.rs`): the month's distinct hosts
/// must stay exact across writes, returning hosts, a host first stored by
/// another process, and a reopen.
#[test]
fn a_months_distinct_hosts_stay_exact_as_hosts_return() {
    let dir = tempfile::tempdir().unwrap();
    let (first, acct, second) = two_openers(dir.path());
    let now = now_ms();
    let hosts = |store: &SqliteStore| store.month_stats(None).unwrap().map_or(0, |m| m.total_remote_hosts);
    let ingest = |store: &SqliteStore, round: &str, hosts: &[&str]| {
        let batch: Vec<Event> =
            hosts.iter().enumerate().map(|(i, h)| event(&format!("{round}-{i}"), now - 9000 + i as i64, h)).collect();
        store.ingest(acct.id, None, batch).unwrap();
    };
    ingest(&first, "a", &["192.0.2.1", "192.0.2.2", "192.0.2.1"]);
    assert_eq!(hosts(&first), 2);
    ingest(&first, "b", &["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    assert_eq!(hosts(&first), 3, "returning hosts are not counted again");
    ingest(&second, "c", &["192.0.2.4", "192.0.2.1"]);
    // Read where it was ingested: another process sees the increments a
    // writer holds only once that writer writes them (within a second).
    assert_eq!(hosts(&second), 4);
    ingest(&first, "d", &["192.0.2.4", "192.0.2.5", "2001:db8::1"]);
    assert_eq!(hosts(&first), 6, "a host another process stored first is counted once");
    first.close().unwrap();
    second.close().unwrap();
    let store = open(dir.path());
    ingest(&store, "e", &["192.0.2.5", "2001:db8::1", "2001:db8::2"]);
    assert_eq!(hosts(&store), 7);
    let stored: i64 = rusqlite::Connection::open(dir.path().join("rollups.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM month_host", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 7);
}

#[test]
fn two_writers_on_one_database_never_store_an_event_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (first, acct, second) = two_openers(dir.path());
    let now = now_ms();
    // Both batches fall in the same seconds, so each writer has them loaded
    // when the other one commits.
    let batch = |tag: &str| -> Vec<Event> {
        (0..300).map(|i| event(&format!("{tag}{i}"), now - 3000 + i * 10, "198.51.100.30")).collect()
    };
    assert_eq!(first.ingest(acct.id, None, batch("a")).unwrap().accepted, 300);
    assert_eq!(second.ingest(acct.id, None, batch("b")).unwrap().accepted, 300);
    assert_eq!(first.ingest(acct.id, None, batch("b")).unwrap().duplicates, 300);
    assert_eq!(second.ingest(acct.id, None, batch("a")).unwrap().duplicates, 300);
    let mut mixed = batch("a");
    mixed.extend(batch("c"));
    let outcome = first.ingest(acct.id, None, mixed).unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (300, 300));
    first.close().unwrap();
    second.close().unwrap();
    assert_eq!(open(dir.path()).sensor_data_count(day_number(now), None).unwrap(), 900);
}

#[test]
fn keys_an_older_version_stored_row_by_row_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let batch: Vec<Event> = (0..200).map(|i| event(&format!("k{i}"), now - 4000 + i * 7, "198.51.100.40")).collect();
    let acct = {
        let store = open(dir.path());
        let acct = account(&store, Role::AllSensors);
        assert_eq!(store.ingest(acct.id, None, batch[..150].to_vec()).unwrap().accepted, 150);
        store.close().unwrap();
        acct
    };
    // Move the keys into the one-row-per-event table that databases written
    // before key chunks (schema version 2) hold them in.
    {
        let conn = rusqlite::Connection::open(dir.path().join("apiary.db")).unwrap();
        let chunks: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT owner, keys FROM event_key_chunks")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut moved = 0;
        for (owner, keys) in chunks {
            for key in keys.chunks_exact(16) {
                let ts = i64::from_le_bytes(key[..8].try_into().unwrap());
                let uid = i64::from_le_bytes(key[8..].try_into().unwrap());
                conn.execute("INSERT INTO event_uids (owner, ts_ms, uid) VALUES (?1, ?2, ?3)", (owner, ts, uid))
                    .unwrap();
                moved += 1;
            }
        }
        assert_eq!(moved, 150);
        conn.execute("DELETE FROM event_key_chunks", []).unwrap();
    }
    let store = open(dir.path());
    let outcome = store.ingest(acct.id, None, batch).unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (50, 150));
    assert_eq!(store.sensor_data_count(day_number(now), None).unwrap(), 200);
}

/// A bulk load's ingest returns before its payload facts are logged
/// (`SqliteOptions::bulk_load`); a read in the same process still sees every
/// answered batch's facts.
#[test]
fn a_bulk_loads_reads_see_the_facts_of_every_answered_batch() {
    use apiary_store::Page;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions { bulk_load: true, ..SqliteOptions::default() }).unwrap();
    let acct = account(&store, Role::Community);
    let now = now_ms();
    let all = Page { offset: 0, limit: 100 };
    for round in 0..20 {
        let host = format!("192.0.2.{}", round + 1);
        let e = with_facts(event(&format!("f{round}"), now - 1000, &host), &[(Some("http-path"), "/y")], &[]);
        store.ingest(acct.id, None, vec![e]).unwrap();
        assert_eq!(store.host_values(host.parse().unwrap(), all).unwrap().len(), 1, "round {round}");
    }
}

#[test]
fn new_databases_get_large_pages_and_existing_ones_keep_theirs() {
    let page_size = |dir: &std::path::Path, file: &str| -> i64 {
        let c = rusqlite::Connection::open(dir.join(file)).unwrap();
        c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    // An apiary.db written before pages grew: SQLite's default of 4 KiB.
    {
        let c = rusqlite::Connection::open(dir.path().join("apiary.db")).unwrap();
        c.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE older (x);").unwrap();
    }
    let now = now_ms();
    let store = open(dir.path());
    let acct = account(&store, Role::AllSensors);
    let batch: Vec<Event> = (0..2000).map(|i| event(&format!("e{i}"), now - 5000 + i, "198.51.100.40")).collect();
    assert_eq!(store.ingest(acct.id, None, batch).unwrap().accepted, 2000);
    store.close().unwrap();
    assert_eq!(page_size(dir.path(), "apiary.db"), 4096);
    assert_eq!(page_size(dir.path(), "rollups.db"), 16_384);
    assert_eq!(page_size(dir.path(), "payloads.db"), 16_384);
    let store = open(dir.path());
    assert_eq!(store.sensor_data_count(day_number(now), None).unwrap(), 2000);
    let fresh = tempfile::tempdir().unwrap();
    open(fresh.path()).close().unwrap();
    assert_eq!(page_size(fresh.path(), "apiary.db"), 16_384);
}
