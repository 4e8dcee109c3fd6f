//! Caches that travel with a value without being part of it.

use std::fmt;
use std::ops::Deref;

/// A cache kept on a value (an analysis) that only repeats what the value already says. A clone
/// starts from `T::default()`: the clone may be changed (an analysis' fields are public), so it
/// must not inherit answers about the original. Equality ignores it, and `Debug` names it only.
#[derive(Default)]
pub(crate) struct Carried<T>(pub(crate) T);

impl<T: Default> Clone for Carried<T> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<T> PartialEq for Carried<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Carried<T> {}

impl<T> fmt::Debug for Carried<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Carried")
    }
}

impl<T> Deref for Carried<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    #[test]
    fn a_clone_starts_empty_and_equality_ignores_the_cache() {
        let filled = Carried(OnceLock::from(7));
        assert_eq!(filled.get(), Some(&7));
        assert_eq!(filled.clone().get(), None);
        assert_eq!(filled, Carried(OnceLock::new()));
        assert_eq!(format!("{filled:?}"), "Carried");
    }
}
