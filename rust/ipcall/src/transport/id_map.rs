//! A map keyed by call id that keeps one entry out of its hash table: a
//! connection has one call in flight most of the time, and then each call's
//! insert and remove are a comparison and a move instead of two hash-table
//! probes (callgrind, `shm:` echo: 117 instructions fewer a call on the
//! client, 57 a request on the server, whose connection mutex remains;
//! docs/DECISIONS.md, "Per-message instructions").

use std::collections::HashMap;

/// Hashes call ids (sequential numbers we issued) with one multiplication:
/// SipHash's flooding resistance buys nothing for keys we choose ourselves,
/// and a peer's answers only ever look ids up.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Table<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A map from call id to `V` with `HashMap`'s meaning (one value per id;
/// iteration in no particular order).
pub(crate) struct IdMap<V> {
    /// One entry kept inline, filled first. Invariant: its id is not in
    /// `rest`.
    first: Option<(u64, V)>,
    /// Every other entry.
    rest: Table<V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { first: None, rest: Table::default() }
    }
}

impl<V> IdMap<V> {
    /// Sets `id`'s value; returns the one it replaced.
    pub(crate) fn insert(&mut self, id: u64, value: V) -> Option<V> {
        match &mut self.first {
            Some((first, held)) if *first == id => return Some(std::mem::replace(held, value)),
            Some(_) => return self.rest.insert(id, value),
            None => {}
        }
        // `first` is free: it takes `id` unless `rest` already has it.
        if let Some(held) = self.get_mut(&id) {
            return Some(std::mem::replace(held, value));
        }
        self.first = Some((id, value));
        None
    }

    /// Takes `id`'s value out.
    pub(crate) fn remove(&mut self, id: &u64) -> Option<V> {
        match &self.first {
            Some((first, _)) if first == id => self.first.take().map(|(_, value)| value),
            _ if self.rest.is_empty() => None,
            _ => self.rest.remove(id),
        }
    }

    pub(crate) fn get(&self, id: &u64) -> Option<&V> {
        match &self.first {
            Some((first, value)) if first == id => Some(value),
            _ if self.rest.is_empty() => None,
            _ => self.rest.get(id),
        }
    }

    pub(crate) fn get_mut(&mut self, id: &u64) -> Option<&mut V> {
        match &mut self.first {
            Some((first, value)) if *first == *id => Some(value),
            _ if self.rest.is_empty() => None,
            _ => self.rest.get_mut(id),
        }
    }

    pub(crate) fn contains_key(&self, id: &u64) -> bool {
        self.get(id).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// Every (id, value).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u64, &V)> {
        self.first.iter().map(|(id, value)| (id, value)).chain(self.rest.iter())
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &u64> {
        self.iter().map(|(id, _)| id)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }

    /// Takes every entry out, leaving the map empty (its table's memory
    /// kept for reuse).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.first.take().into_iter().chain(self.rest.drain())
    }

    pub(crate) fn into_values(self) -> impl Iterator<Item = V> {
        self.first.into_iter().map(|(_, value)| value).chain(self.rest.into_values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so a failure replays.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn sorted<'a>(entries: impl Iterator<Item = (&'a u64, &'a u32)>) -> Vec<(u64, u32)> {
        let mut all: Vec<(u64, u32)> = entries.map(|(id, value)| (*id, *value)).collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn every_operation_answers_as_a_hash_map_does() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut map = IdMap::<u32>::default();
        let mut model = HashMap::<u64, u32>::new();
        for step in 0..200_000u32 {
            // Few ids, so that inserts replace and removes hit, with the
            // inline entry taken, freed and refilled in every order.
            let id = rng.below(6);
            match rng.below(8) {
                0..=2 => assert_eq!(map.insert(id, step), model.insert(id, step), "insert {id} at step {step}"),
                3..=5 => assert_eq!(map.remove(&id), model.remove(&id), "remove {id} at step {step}"),
                6 => {
                    if let Some(value) = map.get_mut(&id) {
                        *value = step;
                    }
                    if let Some(value) = model.get_mut(&id) {
                        *value = step;
                    }
                }
                _ => {
                    if rng.below(50) == 0 {
                        let mut drained: Vec<(u64, u32)> = map.drain().collect();
                        drained.sort_unstable();
                        assert_eq!(drained, sorted(model.iter()), "drain at step {step}");
                        model.clear();
                    }
                }
            }
            assert_eq!(map.get(&id), model.get(&id), "get {id} at step {step}");
            assert_eq!(map.contains_key(&id), model.contains_key(&id));
            assert_eq!(map.len(), model.len(), "len at step {step}");
            assert_eq!(map.is_empty(), model.is_empty());
            assert_eq!(sorted(map.iter()), sorted(model.iter()), "entries at step {step}");
            assert_eq!(map.keys().count(), model.len());
            assert_eq!(map.values().copied().sum::<u32>(), model.values().copied().sum::<u32>());
        }
        let mut values: Vec<u32> = map.into_values().collect();
        let mut expected: Vec<u32> = model.into_values().collect();
        values.sort_unstable();
        expected.sort_unstable();
        assert_eq!(values, expected);
    }

    #[test]
    fn one_call_at_a_time_never_touches_the_table() {
        let mut map = IdMap::<&str>::default();
        for id in 1..1000 {
            assert_eq!(map.insert(id, "waiting"), None);
            assert_eq!(map.remove(&id), Some("waiting"));
        }
        assert!(map.is_empty());
        assert_eq!(map.rest.capacity(), 0, "the table was never allocated");
    }
}
