//! Arbitrary bytes as an etcd value: `msg::parse_value` and `skydns::index::parse_entry` never
//! panic, agree with each other, enforce the documented bounds, and whatever is accepted
//! survives an encode/parse round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = msg::parse_value(data);
    let entry = skydns::index::parse_entry(data);
    match &parsed {
        Ok(records) => {
            assert!(!records.is_empty());
            assert!(records.len() <= msg::record::MAX_RECORDS_PER_VALUE);
            for r in records {
                assert!(r.host.len() <= msg::record::MAX_HOST_LEN);
                assert!(r.text.len() <= msg::record::MAX_TEXT_LEN);
            }
            let again = msg::parse_value(msg::encode_value(records).as_bytes())
                .expect("an accepted value re-encodes to an accepted value");
            assert_eq!(&again, records, "round trip");
            if let Ok(entry) = &entry {
                assert_eq!(entry.len(), records.len());
            }
        }
        Err(_) => assert!(entry.is_err(), "the index accepted what msg rejected"),
    }
});
