//! Every PostgreSQL message decoder of the sidecar over arbitrary bytes: must never panic.
//!
//! Run: `cd sidecar/fuzz && cargo +nightly fuzz run decode -- -max_total_time=60`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dbwarden_sidecar::protocol::fuzz::decode_everything(data);
});
