"""The official HoneyDB Python client (PyPI `honeydb`), unmodified, against
Apiary's IP-intelligence endpoints.

Usage: honeydb_intel.py BASE_URL API_ID THREAT_KEY DAY
Run by crates/apiary/tests/intel.rs once the fixture feeds are loaded and one
event from 81.2.69.160 is stored; exits non-zero on the first mismatch.
"""
import sys

from honeydb import Client
from honeydb.api.client import DATACENTER_PROVIDERS, IPINFO_SOURCES
from honeydb.exceptions import HoneyDBError

base_url, api_id, threat_key, day = sys.argv[1:5]
client = Client(api_id, threat_key, base_url=base_url, retries=0)

london = {"city": "London", "country_iso": "GB", "country_name": "United Kingdom", "latitude": 51.5142,
          "longitude": -0.0931, "postal_code": None, "region_iso": "ENG", "region_name": "England"}

# /ip/{ip} and its views.
full = client.ip("81.2.69.160")
assert full["geo"] == london, full
assert full["history"] == [{"date": day, "service": "HTTP", "event_count": "1"},
                           {"date": day, "service": "SSH", "event_count": "1"}], full
assert full["cve"] == [{"date": day, "cve": "CVE-2021-44228"}], full
assert client.ip_geo("81.2.69.160") == london
assert client.ip_netinfo("81.2.69.160") == full["netinfo"]
assert client.ip_threatinfo("81.2.69.160") == full["threatinfo"]
assert client.ip_internet_scanner("184.105.247.194")["name"] == "The Shadow Server Foundation"
assert client.ip_cve("81.2.69.160") == full["cve"]
assert client.ip_history("81.2.69.160") == full["history"]

# netinfo.
lookup = client.netinfo_lookup("8.8.8.8")
assert (lookup["as_num"], lookup["as_name"], lookup["network"]) == (15169, "Google LLC", "8.8.8.0/24"), lookup
assert lookup["ip_hex"] == "0x8080808" and lookup["network_size"] == 256, lookup
v6 = client.netinfo_lookup("2001:4860:4860::8888")
assert v6["as_num"] == 15169 and v6["ip_version"] == 6, v6
assert v6["network_size"] == 2 ** 86, v6
assert client.netinfo_geolocation("81.2.69.160") == london
assert client.netinfo_as_name(15169) == {"as_name": "Google LLC", "as_num": "15169"}
prefixes = client.netinfo_prefixes(13335)
assert prefixes["as_num"] == 13335 and "1.1.1.0/24" in prefixes["prefixes"], prefixes
assert prefixes["count"] == len(prefixes["prefixes"])

# CIDRs: the client percent-encodes the slash.
cidr = client.netinfo_network_addresses("8.8.8.8/30")
assert cidr == {"cidr": "8.8.8.8/30", "network_addresses": ["8.8.8.8", "8.8.8.9", "8.8.8.10", "8.8.8.11"],
                "network_size": 4}, cidr
assert client.ip_cidr("8.8.8.8/30") == cidr
assert client.ip_cidr("2001:db8::/127")["network_addresses"] == ["2001:db8::", "2001:db8::1"]
try:
    client.ip_cidr("10.0.0.0/8")
except HoneyDBError as e:
    assert e.status_code == 400, e
else:
    raise AssertionError("a /8 was listed")

# ASN.
assert client.asn(15169) == {"as_name": "Google LLC", "as_num": "15169"}
assert client.asn_prefixes("AS15169") == client.netinfo_prefixes(15169)

# ipinfo, every source the client knows.
info = client.ipinfo("1.11.194.81")
assert info["is_threat"] is True and info["threat_lists"]["is_ciarmy"] is True, info
for source in IPINFO_SOURCES:
    key = "is_" + source.replace("-", "_")
    assert client.ipinfo_source(source, "8.8.8.8") == {key: False}, source
assert client.ipinfo_source("tor", "185.241.208.232") == {"is_tor": True}
assert client.ipinfo_source("bogon", "10.0.0.1") == {"is_bogon": True}
assert client.ipinfo_source("threatfox", "8.134.12.90") == {"is_threatfox": True}

# Internet scanners.
assert client.internet_scanner("184.105.247.194") == {"internet_scanner": True}
assert client.internet_scanner("8.8.8.8") == {"internet_scanner": False}
assert client.internet_scanner_info("184.105.247.194")["domain"] == "shadowserver.org"
assert client.internet_scanner_info("8.8.8.8") == {"internet_scanner": False}

# Data centres, every provider the client knows (Azure Germany has no data here: []).
for provider in DATACENTER_PROVIDERS:
    rows = client.datacenter(provider)
    assert isinstance(rows, list), (provider, rows)
    assert (rows == []) == (provider == "azure/germany"), (provider, len(rows))
    assert all("prefix" in r for r in rows), provider
assert {"prefix": "3.4.12.4/32", "region": "eu-west-1", "service": "AMAZON"} in client.datacenter("aws")

print("honeydb client intel compatibility: ok")
