//! Entry points for the fuzz targets (`sidecar/fuzz`): checks a fuzzer can run on arbitrary text
//! that report a broken invariant instead of panicking. Not a stable API.

use super::{lex, shape};

/// Checks that the quick shape key of `sql`, when there is one, is the key built from the
/// parser's tokens (the invariant [`AnalysisCache`](super::AnalysisCache) relies on).
/// `Err` describes the mismatch.
pub fn check_shape_keys(sql: &str, limit: usize) -> Result<(), String> {
    let Some(quick) = shape::quick_key(sql, limit) else {
        return Ok(());
    };
    let tokens = lex::tokenize(sql).map_err(|e| format!("quick key {quick:?}, but {e}"))?;
    let slow = shape::of(&tokens, limit).map(|shape| shape.key);
    if slow.as_ref() == Some(&quick) {
        Ok(())
    } else {
        Err(format!("quick key {quick:?}, parser's key {slow:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreeing_and_refused_texts_pass() {
        assert_eq!(check_shape_keys("SELECT 1 /* a */", 1024), Ok(()));
        assert_eq!(check_shape_keys("SELECT $1", 1024), Ok(()));
        assert_eq!(check_shape_keys("", 0), Ok(()));
    }
}
