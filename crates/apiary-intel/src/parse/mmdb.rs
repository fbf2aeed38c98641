//! MaxMind DB (`.mmdb`) files: geolocation (GeoIP2 nested schema or the flat
//! ip-location-db schema) and ASN databases.
//!
//! MMDB files are untrusted input like any feed: the MaxMind test suite ships
//! corrupt files that crashed readers. Opening therefore (1) refuses markup,
//! (2) opens the reader and runs its full `verify()` pass so a corrupt search tree
//! or data section is found at load time, not at lookup time, and (3) does all of
//! it inside `catch_unwind`, because a panic in a dependency on a bad file must
//! become an error, not a crashed server. Lookups are also guarded.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ipnet::IpNet;
use maxminddb::{Reader, WithinOptions};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::country::{country_name, normalize_code};
use crate::error::ParseError;
use crate::net::IpRange;
use crate::parse::asn::AsnRow;
use crate::parse::sniff;

/// Which record layout a geolocation database uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GeoSchema {
    /// MaxMind GeoIP2/GeoLite2 City or Country: `country.iso_code`, `city.names.en`, ...
    GeoIp2,
    /// ip-location-db / DB-IP lite flat records: `country_code`, `city`, `state1`, ...
    Flat,
}

/// Geolocation of one address. Strings borrow from the loaded database (or the
/// built-in country table), so a lookup allocates nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Geo<'a> {
    /// City name (English).
    pub city: Option<&'a str>,
    /// ISO 3166-1 alpha-2 code.
    pub country_iso: Option<&'a str>,
    /// Country name (English).
    pub country_name: Option<&'a str>,
    /// Latitude.
    pub latitude: Option<f64>,
    /// Longitude.
    pub longitude: Option<f64>,
    /// Postal code.
    pub postal_code: Option<&'a str>,
    /// First-level subdivision code (ISO 3166-2 suffix, e.g. `ENG`).
    pub region_iso: Option<&'a str>,
    /// First-level subdivision name.
    pub region_name: Option<&'a str>,
}

impl Geo<'_> {
    /// Whether nothing at all is known.
    pub fn is_empty(&self) -> bool {
        *self == Geo::default()
    }
}

/// Opens a MMDB from bytes with all the checks above.
fn open(bytes: Vec<u8>) -> Result<Reader<Vec<u8>>, ParseError> {
    sniff(&bytes, true)?;
    let opened = catch_unwind(AssertUnwindSafe(move || -> Result<Reader<Vec<u8>>, ParseError> {
        let reader = Reader::from_source(bytes).map_err(|e| ParseError::Mmdb(e.to_string()))?;
        if let Err(e) = reader.verify() {
            let msg = e.to_string();
            // The reader's verifier insists on a non-empty `description` map and
            // `database_type`; real third-party files (ip-location-db) have an
            // empty description. That is cosmetic, so walk the data ourselves.
            if msg.contains("description - Expected") || msg.contains("database_type - Expected") {
                walk_all(&reader)?;
            } else {
                return Err(ParseError::Mmdb(format!("verification failed: {msg}")));
            }
        }
        Ok(reader)
    }));
    match opened {
        Ok(r) => r,
        Err(_) => Err(ParseError::Mmdb("the reader panicked on this file (corrupt database)".into())),
    }
}

/// Visits every network and decodes every distinct record once (bounded), the
/// part of `verify()` that matters for lookups.
fn walk_all(reader: &Reader<Vec<u8>>) -> Result<(), ParseError> {
    let err = |e: maxminddb::MaxMindDbError| ParseError::Mmdb(format!("verification failed: {e}"));
    let limit = (reader.metadata().node_count as usize).saturating_mul(3).max(16);
    let mut seen = std::collections::HashSet::new();
    for (n, item) in reader.networks(WithinOptions::default()).map_err(err)?.enumerate() {
        if n > limit {
            return Err(ParseError::Mmdb("search tree has a cycle or is malformed".into()));
        }
        let item = item.map_err(err)?;
        if let Some(off) = item.offset() {
            if seen.insert(off) {
                item.decode::<IgnoredAny>().map_err(err)?;
            }
        }
    }
    Ok(())
}

/// A loaded geolocation database.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    schema: GeoSchema,
    database_type: String,
    build_epoch: u64,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("database_type", &self.database_type)
            .field("schema", &self.schema)
            .field("build_epoch", &self.build_epoch)
            .finish()
    }
}

impl GeoDb {
    /// Opens and verifies a City/Country database of either schema.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ParseError> {
        let reader = open(bytes)?;
        let schema = catch_unwind(AssertUnwindSafe(|| detect_schema(&reader)))
            .map_err(|_| ParseError::Mmdb("the reader panicked while probing records".into()))??;
        let md = reader.metadata();
        let database_type = md.database_type.clone();
        let build_epoch = md.build_epoch;
        Ok(GeoDb { reader, schema, database_type, build_epoch })
    }

    /// The record layout found.
    pub fn schema(&self) -> GeoSchema {
        self.schema
    }

    /// `database_type` from the metadata (`GeoIP2-City`, `country`, ...).
    pub fn database_type(&self) -> &str {
        &self.database_type
    }

    /// Build time (Unix seconds) from the metadata. Kept as the raw number: some
    /// files carry `u64::MAX`, which no time type can hold.
    pub fn build_epoch(&self) -> u64 {
        self.build_epoch
    }

    /// A version string for status reports.
    pub fn version(&self) -> String {
        format!("{} build {}", self.database_type, self.build_epoch)
    }

    /// Number of search-tree nodes: the "entry count" used to detect a collapse.
    pub fn node_count(&self) -> usize {
        self.reader.metadata().node_count as usize
    }

    /// The underlying reader, e.g. for a raw reference benchmark.
    pub fn reader(&self) -> &Reader<Vec<u8>> {
        &self.reader
    }

    /// Geolocation of `ip`, `None` when the database has no record (or the record
    /// cannot be decoded: a lookup never fails the whole enrichment).
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo<'_>> {
        let ip = ip.to_canonical();
        catch_unwind(AssertUnwindSafe(|| self.lookup_inner(ip))).ok().flatten()
    }

    fn lookup_inner(&self, ip: IpAddr) -> Option<Geo<'_>> {
        let res = self.reader.lookup(ip).ok()?;
        let geo = match self.schema {
            GeoSchema::GeoIp2 => {
                let r: NestedRecord<'_> = res.decode().ok()??;
                r.into_geo()
            }
            GeoSchema::Flat => {
                let r: FlatRecord<'_> = res.decode().ok()??;
                r.into_geo()
            }
        };
        (!geo.is_empty()).then_some(geo)
    }
}

/// Looks at the first record to tell the two layouts apart, and refuses an ASN
/// database configured as a geolocation source.
fn detect_schema(reader: &Reader<Vec<u8>>) -> Result<GeoSchema, ParseError> {
    let iter = reader.networks(WithinOptions::default()).map_err(|e| ParseError::Mmdb(e.to_string()))?;
    for item in iter.take(64) {
        let item = item.map_err(|e| ParseError::Mmdb(e.to_string()))?;
        let Some(keys) = item.decode::<BTreeMap<&str, IgnoredAny>>().map_err(|e| ParseError::Mmdb(e.to_string()))?
        else {
            continue;
        };
        if keys.contains_key("autonomous_system_number") {
            return Err(ParseError::Format("this is an ASN database, not a geolocation database".into()));
        }
        if keys.contains_key("country_code") && !keys.contains_key("country") {
            return Ok(GeoSchema::Flat);
        }
        if keys.contains_key("country") || keys.contains_key("registered_country") || keys.contains_key("city") {
            return Ok(GeoSchema::GeoIp2);
        }
    }
    Err(ParseError::Empty("no geolocation records found".into()))
}

#[derive(Deserialize)]
struct EnName<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    names: Option<EnName<'a>>,
}

#[derive(Deserialize)]
struct CountryRec<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<EnName<'a>>,
}

#[derive(Deserialize)]
struct LocationRec {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct PostalRec<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct SubdivisionRec<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<EnName<'a>>,
}

/// The GeoIP2 fields enrichment needs; everything else is skipped, not built.
#[derive(Deserialize)]
struct NestedRecord<'a> {
    #[serde(borrow, default)]
    city: Option<Named<'a>>,
    #[serde(borrow, default)]
    country: Option<CountryRec<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<CountryRec<'a>>,
    #[serde(default)]
    location: Option<LocationRec>,
    #[serde(borrow, default)]
    postal: Option<PostalRec<'a>>,
    #[serde(borrow, default, deserialize_with = "first_only")]
    subdivisions: Option<SubdivisionRec<'a>>,
}

/// Reads only the first element of a sequence (the largest subdivision) without
/// allocating a `Vec` for the rest.
fn first_only<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct First<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for First<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<T>()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_seq(First(std::marker::PhantomData))
}

impl<'a> NestedRecord<'a> {
    fn into_geo(self) -> Geo<'a> {
        let country = self.country.or(self.registered_country);
        let (country_iso, country_en) = match country {
            Some(c) => (c.iso_code, c.names.and_then(|n| n.en)),
            None => (None, None),
        };
        let country_name = country_en.or_else(|| country_iso.and_then(country_name));
        let (lat, lon) = self.location.map(|l| (l.latitude, l.longitude)).unwrap_or((None, None));
        let (region_iso, region_name) = match self.subdivisions {
            Some(s) => (s.iso_code, s.names.and_then(|n| n.en)),
            None => (None, None),
        };
        Geo {
            city: self.city.and_then(|c| c.names).and_then(|n| n.en),
            country_iso,
            country_name,
            latitude: lat,
            longitude: lon,
            postal_code: self.postal.and_then(|p| p.code),
            region_iso,
            region_name,
        }
    }
}

/// ip-location-db flat layout (country files hold only `country_code`).
#[derive(Deserialize)]
struct FlatRecord<'a> {
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    city: Option<&'a str>,
    #[serde(borrow, default)]
    state1: Option<&'a str>,
    #[serde(borrow, default)]
    postcode: Option<&'a str>,
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

impl<'a> FlatRecord<'a> {
    fn into_geo(self) -> Geo<'a> {
        let iso = self.country_code.map(|c| normalize_code(c).unwrap_or(c));
        let non_empty = |s: Option<&'a str>| s.filter(|s| !s.is_empty());
        Geo {
            city: non_empty(self.city),
            country_iso: iso,
            country_name: iso.and_then(country_name),
            latitude: self.latitude,
            longitude: self.longitude,
            postal_code: non_empty(self.postcode),
            region_iso: None,
            region_name: non_empty(self.state1),
        }
    }
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

/// Converts a MaxMind ASN database (GeoLite2-ASN, or ip-location-db's ASN mmdb)
/// into ASN rows, so every ASN source ends up in the same fast range table and
/// "prefixes of an ASN" works for it too. Returns the rows and a version string.
pub fn parse_asn_mmdb(bytes: Vec<u8>) -> Result<(Vec<AsnRow>, String), ParseError> {
    let reader = open(bytes)?;
    let converted = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<AsnRow>, ParseError> {
        let mut rows = Vec::new();
        let iter = reader.networks(WithinOptions::default()).map_err(|e| ParseError::Mmdb(e.to_string()))?;
        for item in iter {
            let item = item.map_err(|e| ParseError::Mmdb(e.to_string()))?;
            let Some(rec) = item.decode::<AsnRecord<'_>>().map_err(|e| ParseError::Mmdb(e.to_string()))? else {
                continue;
            };
            let Some(asn) = rec.autonomous_system_number.filter(|a| *a != 0) else { continue };
            let network = item.network().map_err(|e| ParseError::Mmdb(e.to_string()))?;
            let net = IpNet::new(network.ip(), network.prefix()).map_err(|e| ParseError::Mmdb(e.to_string()))?;
            rows.push(AsnRow {
                range: IpRange::from_net(net),
                asn,
                name: rec.autonomous_system_organization.unwrap_or("").to_string(),
                country: None,
            });
        }
        Ok(rows)
    }))
    .map_err(|_| ParseError::Mmdb("the reader panicked while reading networks".into()))??;
    if converted.is_empty() {
        return Err(ParseError::Empty("no ASN records (is this a geolocation database?)".into()));
    }
    let md = reader.metadata();
    Ok((converted, format!("{} build {}", md.database_type, md.build_epoch)))
}
