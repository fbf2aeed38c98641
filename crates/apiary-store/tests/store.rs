//! The embedded store on a real database file: pruning keeps rollups,
//! idempotency holds across reopen, paging is exact.

use std::net::IpAddr;

use apiary_model::time::{day_number, now_ms, MS_PER_DAY};
use apiary_model::{Event, EventKind, Origin, Protocol};
use apiary_store::{NewAccount, Role, SqliteOptions, SqliteStore, Store};

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
    }
}

fn open(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(dir, SqliteOptions::default()).unwrap()
}

#[test]
fn pruning_drops_old_raw_events_and_keeps_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (acct, _) =
        store.create_account(&NewAccount { name: "a".into(), monthly_quota: None, role: Role::AllSensors }).unwrap();
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
}

#[test]
fn ids_never_repeat_and_duplicates_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let batch: Vec<Event> = (0..1500).map(|i| event(&format!("e{i}"), now - 5000 + i, "5.6.7.8")).collect();
    let (acct, last_id) = {
        let store = open(dir.path());
        let (acct, _) =
            store.create_account(&NewAccount { name: "a".into(), monthly_quota: None, role: Role::Community }).unwrap();
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
