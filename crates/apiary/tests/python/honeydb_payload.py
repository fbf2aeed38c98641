"""The official HoneyDB Python client (PyPI `honeydb`), unmodified, against
Apiary's payload-history and CVE endpoints.

Usage: honeydb_payload.py BASE_URL API_ID THREAT_KEY DAY WP_LOGIN_HASH CVES_JSON
Run by crates/apiary/tests/payload_history.rs once real clients have attacked
the sensor of `apiary up`; exits non-zero on the first mismatch.
"""
import json
import sys

from honeydb import Client

base_url, api_id, threat_key, day, wp_hash, cves = sys.argv[1:7]
cves = set(json.loads(cves))
year, month = int(day[:4]), int(day[5:7])
client = Client(api_id, threat_key, base_url=base_url, retries=0)

rows = client.payload_history(year)
assert rows and all(set(r) >= {"date", "service", "attribute", "hash", "value"} for r in rows), rows
assert client.payload_history(year, month) == rows
wp = {"date": day, "service": "HTTP", "attribute": "http-path", "hash": wp_hash, "value": "/wp-login.php",
      "truncated": False}
assert wp in rows, rows
assert client.payload_history_hash(wp_hash) == [wp]
assert wp in client.payload_history_service("HTTP")
assert {"HTTP", "Redis", "DNS.udp"} <= set(client.payload_history_services())
assert client.payload_history_hash_remote_hosts(wp_hash, year) == [{"date": day, "remote_host": "127.0.0.1"}]
assert client.payload_history_remote_hosts() == {str(year): ["127.0.0.1"]}
assert {"date": day, "hash": wp_hash} in client.payload_history_remote_host("127.0.0.1")
assert "http-user-agent" in client.payload_history_attributes()
agents = [a["value"] for a in client.payload_history_attribute("http-user-agent")]
assert "Mozilla/5.0 (apiary-e2e)" in agents, agents

assert {s["cve"] for s in client.cve_ip("127.0.0.1")} == cves
assert client.ip_cve("127.0.0.1") == client.cve_ip("127.0.0.1")
assert client.cve("CVE-2021-44228") == [{"date": day, "remote_host": "127.0.0.1"}]
print("ok")
