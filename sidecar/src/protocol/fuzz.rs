//! One entry point that runs every decoder over arbitrary bytes, for the fuzz target and the
//! property tests: it must return, never panic, whatever the input.

use bytes::BytesMut;

use super::backend::{
    Authentication, DataRow, ErrorFields, RowDescription, backend_key, ready_status,
};
use super::codec::{split_frame, split_startup};
use super::frontend::FrontendMessage;
use super::startup::StartupPacket;

/// Decodes `data` as a startup packet, then as a stream of regular messages in both
/// directions. Returns how many messages decoded cleanly.
pub fn decode_everything(data: &[u8]) -> usize {
    let mut ok = 0;
    let mut buf = BytesMut::from(data);
    if let Ok(Some(body)) = split_startup(&mut buf, 10_000) {
        ok += usize::from(StartupPacket::decode(&body).is_ok());
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = split_frame(&mut buf, 1 << 20) {
        let (tag, body) = (frame.tag(), frame.body());
        ok += usize::from(FrontendMessage::decode(tag, body).is_ok());
        let backend_ok = match tag {
            b'R' => Authentication::decode(body).is_ok(),
            b'E' | b'N' => ErrorFields::decode(tag, body)
                .map(|f| f.field(b'M'))
                .is_ok(),
            b'T' => RowDescription::decode(body)
                .map(|d| d.fields().count())
                .is_ok(),
            b'D' => DataRow::decode(body).map(|r| r.values().count()).is_ok(),
            b'Z' => ready_status(body).is_ok(),
            b'K' => backend_key(body).is_ok(),
            _ => false,
        };
        ok += usize::from(backend_ok);
    }
    ok
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bytes::BufMut;
    use postgres_protocol::message::frontend as fe;
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::backend::encode_data_row;

    fn cstring() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,40}"
    }

    /// A statement or portal name: at most 63 bytes (15 characters of at most 4 bytes).
    fn name() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,15}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_everything(&data);
        }

        #[test]
        fn arbitrary_bodies_behind_valid_headers_never_panic(
            tag in any::<u8>(),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut data = vec![tag];
            data.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
            data.extend_from_slice(&body);
            decode_everything(&data);
        }

        #[test]
        fn extended_messages_round_trip(name in name(), sql in cstring(), types in proptest::collection::vec(any::<u32>(), 0..8)) {
            let mut out = BytesMut::new();
            fe::parse(&name, &sql, types.iter().copied(), &mut out).unwrap();
            fe::query(&sql, &mut out).unwrap();
            fe::execute(&name, 7, &mut out).unwrap();
            fe::sync(&mut out);
            let mut seen = Vec::new();
            while let Some(frame) = split_frame(&mut out, 1 << 20).unwrap() {
                seen.push(format!("{:?}", FrontendMessage::decode(frame.tag(), frame.body()).unwrap()));
            }
            prop_assert_eq!(seen.len(), 4);
            let mut b = BytesMut::new();
            fe::parse(&name, &sql, types.iter().copied(), &mut b).unwrap();
            let body = b.split_off(5);
            let parse = FrontendMessage::decode(b'P', &body).unwrap();
            prop_assert_eq!(parse, FrontendMessage::Parse { name: name.as_bytes(), sql: sql.as_bytes(), param_types: types.len() });
        }

        #[test]
        fn frames_survive_any_chunking(
            values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)), 0..10),
            rows in 1usize..20,
            cut in 1usize..97,
        ) {
            let mut wire = BytesMut::new();
            for _ in 0..rows {
                encode_data_row(&mut wire, values.iter().map(|v| v.as_deref()));
            }
            let mut buf = BytesMut::new();
            let mut decoded = 0;
            for chunk in wire.chunks(cut) {
                buf.put_slice(chunk);
                while let Some(frame) = split_frame(&mut buf, 1 << 20).unwrap() {
                    let row = DataRow::decode(frame.body()).unwrap();
                    prop_assert_eq!(row.values().map(|v| v.map(<[u8]>::to_vec)).collect::<Vec<_>>(), values.clone());
                    decoded += 1;
                }
            }
            prop_assert_eq!(decoded, rows);
            prop_assert!(buf.is_empty());
        }
    }
}
