//! The quick shape key against the parser's: whenever the quick path gives a key, it must be the
//! one built from sqlparser's tokens, or two statements could share an analysis they should not.
//!
//! Run: `cd sidecar/fuzz && cargo +nightly fuzz run shape -- -dict=shape.dict -max_total_time=60`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    // A second, small key length limit taken from the last byte, so keys at the limit's edge are
    // reached too.
    let small = data.last().map_or(0, |&b| usize::from(b) * 4);
    for limit in [1 << 16, small] {
        if let Err(mismatch) = dbwarden_policy::analyze::fuzz::check_shape_keys(sql, limit) {
            panic!("{sql:?} (limit {limit}): {mismatch}");
        }
    }
});
