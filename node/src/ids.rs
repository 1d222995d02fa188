//! Numbers by which the setup script (`faces.rs`) names this thread's
//! servers and clients to the raw native functions: JavaScript passes a
//! number, never a pointer, so any number is safe (one that names nothing
//! finds nothing).

/// Objects by number; a freed number is reused by the next object.
pub(crate) struct Ids<T> {
    /// `None`: a freed number.
    slots: Vec<Option<T>>,
    /// Freed numbers.
    free: Vec<u32>,
}

impl<T: Clone> Ids<T> {
    pub(crate) const fn new() -> Self {
        Ids { slots: Vec::new(), free: Vec::new() }
    }

    /// Lists `value`; returns its number.
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(value);
                id
            }
            None => {
                self.slots.push(Some(value));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Frees `id` (its object is gone).
    pub(crate) fn remove(&mut self, id: u32) {
        if let Some(slot) = self.slots.get_mut(id as usize) {
            if slot.take().is_some() {
                self.free.push(id);
            }
        }
    }

    /// The object a JavaScript number names, if any (NaN, negative or
    /// out-of-range numbers name nothing).
    pub(crate) fn get(&self, id: f64) -> Option<T> {
        // A float index out of range saturates and finds nothing.
        self.slots.get(id as usize).filter(|_| id >= 0.0).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::Ids;

    #[test]
    fn numbers_are_reused_once_freed_and_bad_numbers_find_nothing() {
        let mut ids = Ids::new();
        let (a, b) = (ids.insert('a'), ids.insert('b'));
        assert_eq!((a, b), (0, 1));
        ids.remove(a);
        ids.remove(a); // twice: freed once
        assert_eq!(ids.get(0.0), None);
        assert_eq!(ids.insert('c'), 0);
        assert_eq!(ids.insert('d'), 2);
        assert_eq!(ids.get(1.0), Some('b'));
        for bad in [f64::NAN, -1.0, 1e300, f64::INFINITY, 7.0] {
            assert_eq!(ids.get(bad), None, "{bad}");
        }
    }
}
