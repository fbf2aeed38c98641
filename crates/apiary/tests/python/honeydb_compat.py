"""The official HoneyDB Python client (PyPI `honeydb`), unmodified, against Apiary.

Usage: honeydb_compat.py BASE_URL API_ID THREAT_KEY SENSOR_KEY DAY
Run by crates/apiary/tests/python_client.rs after it has ingested known events;
exits non-zero on the first mismatch.
"""
import sys

from honeydb import Client
from honeydb.exceptions import HoneyDBAuthError

base_url, api_id, threat_key, sensor_key, day = sys.argv[1:6]
client = Client(api_id, threat_key, base_url=base_url, retries=0)

hosts = client.bad_hosts()
assert hosts[0] == {"remote_host": "198.51.100.7", "count": "3", "last_seen": day}, hosts
assert {h["remote_host"] for h in hosts} == {"198.51.100.7", "2001:db8::66"}, hosts
assert [int(h["count"]) for h in hosts] == sorted((int(h["count"]) for h in hosts), reverse=True)

csv_text = client.bad_hosts(format="csv")
assert csv_text.splitlines()[0] == "remote_host,count,last_seen", csv_text
assert f"198.51.100.7,3,{day}" in csv_text.splitlines(), csv_text

assert client.bad_hosts(mydata=True) == hosts
by_service = client.bad_hosts_by_service("ssh")
assert by_service == [{"remote_host": "198.51.100.7", "count": "3", "last_seen": day}], by_service
assert client.bad_hosts_by_service("Telnet", mydata=True)[0]["remote_host"] == "2001:db8::66"
assert client.bad_hosts_by_service("nosuchservice") == []

services = client.services()
assert services == [{"service": "SSH", "count": "3"}, {"service": "Telnet", "count": "1"}], services

year, month = (int(x) for x in day.split("-")[:2])
stats = client.stats(year, month)
assert stats["total_events"] == "4" and stats["total_remote_hosts"] == "2", stats
assert list(stats["top_services"]) == ["SSH", "Telnet"], stats

page = client.sensor_data(day)
data, cursor = page[0]["data"], page[1]["from_id"]
assert len(data) == 4 and isinstance(cursor, str), page
assert {e["event"] for e in data} == {"CONNECT", "RX", "INFO"}, data
rx = next(e for e in data if e["event"] == "RX")
assert bytes.fromhex(rx["data"]) == b"SSH-2.0-libssh\r\n" and rx["bytes"] == str(len(rx["data"])), rx
assert client.sensor_data(day, from_id=cursor) == [{"data": []}, {"from_id": 0}]
two = client.sensor_data(day, from_id=int(cursor) - 2, mydata=False)
assert len(two[0]["data"]) == 2, two
assert client.sensor_data_count(day) == [{"sensor_data_count": "4"}]
assert client.sensor_data_count(day, mydata=False) == [{"sensor_data_count": "4"}]

nodes = client.nodes()
assert nodes == [{"node": "3386e49be694e179a429344f745703d6", "country": "Private IP"}], nodes
assert client.nodes(mydata=True) == nodes

history = client.ip_history("198.51.100.7")
assert history == [{"date": day, "service": "SSH", "event_count": "3"}], history
assert client.ip_history("2001:db8::66")[0]["service"] == "Telnet"

# The sensor key must not read the threat API.
try:
    Client(api_id, sensor_key, base_url=base_url, retries=0).services()
except HoneyDBAuthError as e:
    assert e.status_code == 403, e
else:
    raise AssertionError("a sensor key read the threat API")
try:
    Client(api_id, "wrong", base_url=base_url, retries=0).bad_hosts()
except HoneyDBAuthError as e:
    assert e.status_code == 401, e
else:
    raise AssertionError("a wrong key was accepted")

print("honeydb client compatibility: ok")
