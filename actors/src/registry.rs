//! The supervisor's session table, built so that no single step walks or rehashes every
//! session: a million sessions must not stall the supervisor (and every lookup waiting
//! behind it) for seconds.
//!
//! Sessions are spread by id over [`SHARDS`] hash maps. A map grows by rehashing only
//! its own entries (a 1024th of the table), and walks (listing, reaping) go a few shards
//! per step, with other messages handled between steps. Entries never move between
//! shards, so a walk in steps visits every entry that lives through it exactly once;
//! entries added or removed meanwhile may or may not be seen, as with any live view.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// How many maps the table is spread over. At a million sessions a shard holds about
/// 1 000, so a shard's rehash or walk takes well under a millisecond.
pub const SHARDS: usize = 1024;

/// Where a walk in steps goes on from (a shard index); `None` when it is done.
pub type Cursor = Option<usize>;

/// Sessions by id, in [`SHARDS`] maps.
pub struct Registry<E> {
    shards: Box<[HashMap<String, E>]>,
    /// Which shard an id is in (its own keys, so the maps' own hashes are independent).
    spread: RandomState,
    len: usize,
}

impl<E> Default for Registry<E> {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            spread: RandomState::new(),
            len: 0,
        }
    }
}

impl<E> Registry<E> {
    fn shard(&self, id: &str) -> usize {
        // The modulo keeps the index in range whatever the hash; SHARDS is a power of two.
        (self.spread.hash_one(id) as usize) % SHARDS
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `id` is here.
    pub fn contains(&self, id: &str) -> bool {
        self.shards[self.shard(id)].contains_key(id)
    }

    /// The entry of `id`.
    pub fn get(&self, id: &str) -> Option<&E> {
        self.shards[self.shard(id)].get(id)
    }

    /// The entry of `id`, to change.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut E> {
        let shard = self.shard(id);
        self.shards[shard].get_mut(id)
    }

    /// Adds `entry` under `id`, replacing (and returning) one already there.
    pub fn insert(&mut self, id: String, entry: E) -> Option<E> {
        let shard = self.shard(&id);
        let old = self.shards[shard].insert(id, entry);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Takes `id` out.
    pub fn remove(&mut self, id: &str) -> Option<E> {
        let shard = self.shard(id);
        let old = self.shards[shard].remove(id);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Every entry, in no order (a full walk: for what must see all at once).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &E)> {
        self.shards.iter().flat_map(HashMap::iter)
    }

    /// One step of a walk: the entries of whole shards from `from` on, as many shards
    /// as fit in `at_most` entries but always at least one (a shard holds about a
    /// 1024th of the table), and where the next step starts.
    pub fn step(&self, from: usize, at_most: usize) -> (Vec<(&String, &E)>, Cursor) {
        let mut taken = Vec::new();
        let mut shard = from;
        while shard < SHARDS {
            let here = &self.shards[shard];
            if !taken.is_empty() && taken.len() + here.len() > at_most {
                break;
            }
            taken.extend(here.iter());
            shard += 1;
        }
        (taken, (shard < SHARDS).then_some(shard))
    }

    /// Takes every entry out.
    pub fn drain(&mut self) -> Vec<(String, E)> {
        self.len = 0;
        self.shards.iter_mut().flat_map(|s| s.drain()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize) -> Registry<usize> {
        let mut r = Registry::default();
        for i in 0..n {
            assert!(r.insert(format!("s{i}"), i).is_none());
        }
        r
    }

    #[test]
    fn counts_inserts_and_removes_once() {
        let mut r = filled(1000);
        assert_eq!(r.len(), 1000);
        assert_eq!(
            r.insert("s1".into(), 7),
            Some(1),
            "a replace is not a new entry"
        );
        assert_eq!(r.len(), 1000);
        assert_eq!(r.remove("s1"), Some(7));
        assert_eq!(r.remove("s1"), None);
        assert_eq!(r.len(), 999);
        assert!(!r.contains("s1") && r.contains("s2"));
        *r.get_mut("s2").expect("there") = 20;
        assert_eq!(r.get("s2"), Some(&20));
        assert_eq!(r.drain().len(), 999);
        assert!(r.is_empty() && r.iter().next().is_none());
    }

    /// A walk in steps, with entries added and removed between the steps, sees every
    /// entry that lived through it exactly once.
    #[test]
    fn a_walk_in_steps_sees_every_lasting_entry_once() {
        let mut r = filled(10_000);
        let mut seen = std::collections::HashMap::<String, usize>::new();
        let mut cursor = Some(0);
        let mut added = 0;
        let mut steps = 0;
        while let Some(from) = cursor {
            let (taken, next) = r.step(from, 300);
            for (id, _) in &taken {
                *seen.entry((*id).clone()).or_default() += 1;
            }
            cursor = next;
            steps += 1;
            // Meanwhile: the odd thousands go, new ones come.
            r.remove(&format!("s{}", steps * 2 + 1));
            r.insert(format!("new{added}"), 0);
            added += 1;
        }
        assert!(steps > 10, "a step is a few shards, not the table");
        for i in 0..10_000 {
            let id = format!("s{i}");
            if r.contains(&id) {
                assert_eq!(seen.get(&id), Some(&1), "{id} seen once");
            }
        }
        assert!(seen.values().all(|&n| n == 1), "nothing seen twice");
    }

    #[test]
    fn an_empty_table_walks_in_one_step() {
        let r: Registry<()> = Registry::default();
        let (taken, next) = r.step(0, 4096);
        assert!(taken.is_empty());
        assert_eq!(next, None);
        let small = filled(100);
        let (taken, next) = small.step(0, 4096);
        assert_eq!((taken.len(), next), (100, None));
    }

    /// A step takes whole shards up to its bound, and one shard even when that one
    /// alone is over it.
    #[test]
    fn a_step_stays_within_its_bound_but_takes_a_shard() {
        let r = filled(50_000);
        let (taken, next) = r.step(0, 200);
        assert!(taken.len() <= 200 && taken.len() >= 40, "{}", taken.len());
        assert!(next.is_some());
        let (one, next) = r.step(0, 1);
        assert_eq!(next, Some(1), "exactly the first shard");
        assert_eq!(one.len(), r.shards[0].len());
        let (rest, next) = r.step(SHARDS - 1, usize::MAX);
        assert_eq!((rest.len(), next), (r.shards[SHARDS - 1].len(), None));
    }
}
