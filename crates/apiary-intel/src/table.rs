//! Lookup structures: sorted, non-overlapping range tables and merged IP sets.
//!
//! Why not a trie: every source here is a list of ranges, many not CIDR-aligned
//! (ip-location-db, iptoasn), and a sorted array with binary search is compact
//! (three words per entry), cache friendly and trivially immutable, which is what
//! an atomically swapped snapshot needs. Overlaps are resolved once, at build
//! time, so a lookup is a single `partition_point`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

use crate::net::{canonical, IpRange};

/// An integer address type (`u32` for IPv4, `u128` for IPv6).
pub trait Key: Copy + Ord + std::fmt::Debug + Send + Sync + 'static {
    /// Largest value.
    const MAX: Self;
    /// `self + 1`, `None` at the top.
    fn succ(self) -> Option<Self>;
    /// `self - 1`, `None` at zero.
    fn pred(self) -> Option<Self>;
    /// `b - a` for `a <= b` (the size of `[a, b]` minus one; cannot overflow).
    fn span(a: Self, b: Self) -> Self;
}

impl Key for u32 {
    const MAX: Self = u32::MAX;
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
    fn span(a: Self, b: Self) -> Self {
        b - a
    }
}

impl Key for u128 {
    const MAX: Self = u128::MAX;
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
    fn span(a: Self, b: Self) -> Self {
        b - a
    }
}

/// A sorted table of disjoint inclusive ranges `[start, end] → value`.
#[derive(Debug, Clone)]
pub struct RangeTable<K, V> {
    starts: Vec<K>,
    ends: Vec<K>,
    values: Vec<V>,
}

impl<K: Key, V> Default for RangeTable<K, V> {
    fn default() -> Self {
        RangeTable { starts: Vec::new(), ends: Vec::new(), values: Vec::new() }
    }
}

impl<K: Key, V: Clone + PartialEq> RangeTable<K, V> {
    /// Builds a table from possibly overlapping ranges.
    ///
    /// Overlap rule: where ranges overlap, the **most specific** (smallest) range
    /// wins, and among equally sized ranges the **later** one in input order wins.
    /// That is what routing does (longest prefix) and what the ip-location-db ASN
    /// file needs (`214.95.0.0-215.0.255.255 AS749` followed by the smaller
    /// `215.0.0.0-215.1.3.255 AS721`). Adjacent pieces with equal values are merged.
    /// Ranges with `start > end` are ignored.
    pub fn build(input: impl IntoIterator<Item = (K, K, V)>) -> Self {
        let items: Vec<(K, K, V)> = input.into_iter().filter(|(s, e, _)| s <= e).collect();
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| items[i].0);

        // Every point where the winner can change: each start and each end + 1.
        let mut bounds: Vec<K> = Vec::with_capacity(items.len() * 2);
        for (s, e, _) in &items {
            bounds.push(*s);
            if let Some(n) = e.succ() {
                bounds.push(n);
            }
        }
        bounds.sort_unstable();
        bounds.dedup();

        let mut table = RangeTable::default();
        // Max-heap ordered by (smallest span, latest index).
        let mut heap: BinaryHeap<(Reverse<K>, usize)> = BinaryHeap::new();
        let mut next = 0;
        for (bi, &seg_start) in bounds.iter().enumerate() {
            while next < order.len() && items[order[next]].0 <= seg_start {
                let i = order[next];
                heap.push((Reverse(K::span(items[i].0, items[i].1)), i));
                next += 1;
            }
            while let Some(&(_, i)) = heap.peek() {
                if items[i].1 < seg_start {
                    heap.pop();
                } else {
                    break;
                }
            }
            let Some(&(_, winner)) = heap.peek() else { continue };
            let seg_end = match bounds.get(bi + 1) {
                Some(b) => b.pred().unwrap_or(seg_start),
                None => K::MAX,
            };
            table.push_merge(seg_start, seg_end, &items[winner].2);
        }
        table.shrink();
        table
    }

    fn push_merge(&mut self, start: K, end: K, value: &V) {
        if let (Some(last_end), Some(last_v)) = (self.ends.last_mut(), self.values.last()) {
            if last_v == value && last_end.succ() == Some(start) {
                *last_end = end;
                return;
            }
        }
        self.starts.push(start);
        self.ends.push(end);
        self.values.push(value.clone());
    }

    fn shrink(&mut self) {
        self.starts.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.values.shrink_to_fit();
    }
}

impl<K: Key, V> RangeTable<K, V> {
    /// The entry containing `k`: `(start, end, value)`.
    #[inline]
    pub fn get(&self, k: K) -> Option<(K, K, &V)> {
        let i = self.starts.partition_point(|&s| s <= k);
        if i == 0 {
            return None;
        }
        let i = i - 1;
        if self.ends[i] >= k {
            Some((self.starts[i], self.ends[i], &self.values[i]))
        } else {
            None
        }
    }

    /// Number of disjoint entries.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// All entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (K, K, &V)> + '_ {
        self.starts.iter().zip(&self.ends).zip(&self.values).map(|((s, e), v)| (*s, *e, v))
    }
}

/// A [`RangeTable`] for both address families.
#[derive(Debug, Clone)]
pub struct IpTable<V> {
    v4: RangeTable<u32, V>,
    v6: RangeTable<u128, V>,
}

impl<V> Default for IpTable<V> {
    fn default() -> Self {
        IpTable { v4: RangeTable::default(), v6: RangeTable::default() }
    }
}

impl<V: Clone + PartialEq> IpTable<V> {
    /// Builds from `(range, value)` pairs with the [`RangeTable::build`] overlap rule.
    pub fn build(input: impl IntoIterator<Item = (IpRange, V)>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (r, v) in input {
            match r {
                IpRange::V4(s, e) => v4.push((s, e, v)),
                IpRange::V6(s, e) => v6.push((s, e, v)),
            }
        }
        IpTable { v4: RangeTable::build(v4), v6: RangeTable::build(v6) }
    }
}

impl<V> IpTable<V> {
    /// The value for `ip` and the disjoint piece it lies in.
    #[inline]
    pub fn get(&self, ip: IpAddr) -> Option<(IpRange, &V)> {
        match canonical(ip) {
            IpAddr::V4(a) => self.v4.get(a.into()).map(|(s, e, v)| (IpRange::V4(s, e), v)),
            IpAddr::V6(a) => self.v6.get(a.into()).map(|(s, e, v)| (IpRange::V6(s, e), v)),
        }
    }

    /// Number of disjoint entries.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// All entries, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = (IpRange, &V)> + '_ {
        self.v4
            .iter()
            .map(|(s, e, v)| (IpRange::V4(s, e), v))
            .chain(self.v6.iter().map(|(s, e, v)| (IpRange::V6(s, e), v)))
    }
}

/// A set of addresses stored as merged, sorted ranges: membership is one binary
/// search whatever the mix of single IPs and CIDRs the list had.
#[derive(Debug, Clone, Default)]
pub struct IpSet {
    v4: RangeTable<u32, ()>,
    v6: RangeTable<u128, ()>,
}

impl IpSet {
    /// Builds the set; overlapping and adjacent ranges are merged.
    pub fn build(ranges: impl IntoIterator<Item = IpRange>) -> Self {
        let mut v4: Vec<(u32, u32)> = Vec::new();
        let mut v6: Vec<(u128, u128)> = Vec::new();
        for r in ranges {
            match r {
                IpRange::V4(s, e) if s <= e => v4.push((s, e)),
                IpRange::V6(s, e) if s <= e => v6.push((s, e)),
                _ => {}
            }
        }
        IpSet { v4: merge(v4), v6: merge(v6) }
    }

    /// Membership test (IPv4-mapped IPv6 is tested as IPv4).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => self.v4.get(a.into()).is_some(),
            IpAddr::V6(a) => self.v6.get(a.into()).is_some(),
        }
    }

    /// The merged range containing `ip`.
    pub fn range_of(&self, ip: IpAddr) -> Option<IpRange> {
        match canonical(ip) {
            IpAddr::V4(a) => self.v4.get(a.into()).map(|(s, e, _)| IpRange::V4(s, e)),
            IpAddr::V6(a) => self.v6.get(a.into()).map(|(s, e, _)| IpRange::V6(s, e)),
        }
    }

    /// Number of merged ranges.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The merged ranges, IPv4 first.
    pub fn ranges(&self) -> impl Iterator<Item = IpRange> + '_ {
        self.v4.iter().map(|(s, e, _)| IpRange::V4(s, e)).chain(self.v6.iter().map(|(s, e, _)| IpRange::V6(s, e)))
    }
}

fn merge<K: Key>(mut v: Vec<(K, K)>) -> RangeTable<K, ()> {
    v.sort_unstable();
    let mut t: RangeTable<K, ()> = RangeTable::default();
    for (s, e) in v {
        if let Some(last) = t.ends.last_mut() {
            // Overlapping or adjacent: extend.
            if last.succ().is_none_or(|n| s <= n) {
                if e > *last {
                    *last = e;
                }
                continue;
            }
        }
        t.starts.push(s);
        t.ends.push(e);
        t.values.push(());
    }
    t.shrink_vecs();
    t
}

impl<K: Key> RangeTable<K, ()> {
    fn shrink_vecs(&mut self) {
        self.starts.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: scan every input range; smallest span wins, later wins ties.
    fn naive(items: &[(u32, u32, u32)], k: u32) -> Option<u32> {
        let mut best: Option<(u32, usize)> = None;
        for (i, (s, e, _)) in items.iter().enumerate() {
            if s <= e && *s <= k && k <= *e {
                let span = e - s;
                match best {
                    Some((bs, _)) if span > bs => {}
                    _ => best = Some((span, i)),
                }
            }
        }
        best.map(|(_, i)| items[i].2)
    }

    #[test]
    fn later_more_specific_wins() {
        let t = RangeTable::build(vec![(10u32, 100u32, 'a'), (50, 60, 'b'), (55, 56, 'c'), (90, 200, 'd')]);
        assert_eq!(t.get(9), None);
        assert_eq!(t.get(10).map(|x| *x.2), Some('a'));
        assert_eq!(t.get(50).map(|x| *x.2), Some('b'));
        assert_eq!(t.get(55).map(|x| *x.2), Some('c'));
        assert_eq!(t.get(57).map(|x| *x.2), Some('b'));
        assert_eq!(t.get(61).map(|x| *x.2), Some('a'));
        assert_eq!(t.get(95).map(|x| *x.2), Some('a'));
        assert_eq!(t.get(101).map(|x| *x.2), Some('d'));
        assert_eq!(t.get(201), None);
        let full = RangeTable::build(vec![(0u32, u32::MAX, 1u8), (u32::MAX, u32::MAX, 2)]);
        assert_eq!(full.get(u32::MAX).map(|x| *x.2), Some(2));
        assert_eq!(full.get(0).map(|x| *x.2), Some(1));
    }

    proptest! {
        #[test]
        fn table_matches_linear_scan(
            items in proptest::collection::vec((0u32..400, 0u32..60, 0u32..5), 0..40),
            probes in proptest::collection::vec(0u32..500, 1..60),
        ) {
            let items: Vec<(u32, u32, u32)> = items.into_iter().map(|(s, len, v)| (s, s + len, v)).collect();
            let t = RangeTable::build(items.clone());
            // Entries are sorted and disjoint.
            let entries: Vec<_> = t.iter().collect();
            for w in entries.windows(2) {
                prop_assert!(w[0].1 < w[1].0);
            }
            for k in probes {
                prop_assert_eq!(t.get(k).map(|x| *x.2), naive(&items, k));
            }
        }

        #[test]
        fn set_matches_linear_scan(
            items in proptest::collection::vec((0u128..1000, 0u128..50), 0..40),
            probes in proptest::collection::vec(0u128..1100, 1..60),
        ) {
            let ranges: Vec<IpRange> = items.iter().map(|(s, l)| IpRange::V6(*s, s + l)).collect();
            let set = IpSet::build(ranges.clone());
            for k in probes {
                let ip = IpAddr::V6(std::net::Ipv6Addr::from(k));
                let expected = items.iter().any(|(s, l)| *s <= k && k <= s + l);
                // ::/96 holds IPv4-compatible addresses, not IPv4-mapped, so no canonicalisation here.
                prop_assert_eq!(set.contains(ip), expected);
            }
        }
    }
}
