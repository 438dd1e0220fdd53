//! The SkyDNS JSON record value: one object, or an array of objects (our extension for names
//! that carry several records).

use serde::{Deserialize, Serialize};

/// SRV priority / MX preference used when a record says 0 or nothing.
pub const DEFAULT_PRIORITY: u16 = 10;
/// Raw SRV weight kube2sky writes.
pub const DEFAULT_WEIGHT: u16 = 10;
/// Largest array we accept in one value; larger values are rejected as hostile.
pub const MAX_RECORDS_PER_VALUE: usize = 4096;
/// Longest `host` we accept (a DNS name is at most 253 characters in text form).
pub const MAX_HOST_LEN: usize = 255;
/// Longest `text` we accept.
pub const MAX_TEXT_LEN: usize = 16 * 1024;

/// One SkyDNS record. Field order is the order classic kube2sky wrote:
/// `{"host":H,"port":P,"priority":10,"weight":10,"ttl":30}`; empty fields are omitted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    /// Target: an IP literal (A/AAAA) or a domain name (CNAME, or SRV/MX/PTR/NS target).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// SRV port; 0 (omitted) means none.
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    /// SRV priority / MX preference; 0 means [`DEFAULT_PRIORITY`].
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub priority: u16,
    /// Raw SRV weight, relative to the other records of the same priority (0 counts as 100).
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub weight: u16,
    /// TXT content (answered as 255-byte strings).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Whether the record also answers MX queries (preference = priority).
    #[serde(default, skip_serializing_if = "is_false")]
    pub mail: bool,
    /// TTL in seconds; 0 means the server's default.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    /// Labels to strip from the key-derived name synthesised as the SRV/MX target of an IP host.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub targetstrip: u32,
    /// SkyDNS group: when an answer unites several keys, the shortest keys' group selects which
    /// records are answered (records without a group always are).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

impl Record {
    /// A record with only a host (A/AAAA/CNAME/PTR target).
    pub fn host(host: impl Into<String>) -> Self {
        Record {
            host: host.into(),
            ..Default::default()
        }
    }

    /// The record classic kube2sky wrote: host, port (omitted when 0), priority 10, weight 10, ttl.
    pub fn service(host: impl Into<String>, port: u16, ttl: u32) -> Self {
        Record {
            host: host.into(),
            port,
            priority: DEFAULT_PRIORITY,
            weight: DEFAULT_WEIGHT,
            ttl,
            ..Default::default()
        }
    }

    /// The priority to answer with (0 means the default, 10).
    pub fn effective_priority(&self) -> u16 {
        if self.priority == 0 {
            DEFAULT_PRIORITY
        } else {
            self.priority
        }
    }
}

/// Why a value under the prefix could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The value is not JSON of the record shape.
    #[error("not a SkyDNS record: {0}")]
    Json(#[from] serde_json::Error),
    /// The value is not UTF-8.
    #[error("value is not UTF-8")]
    Utf8,
    /// The value is an empty array.
    #[error("empty record array")]
    Empty,
    /// The array holds more than [`MAX_RECORDS_PER_VALUE`] records (the count).
    #[error("record array of {0} entries exceeds the limit of {MAX_RECORDS_PER_VALUE}")]
    TooMany(usize),
    /// A `host` is longer than [`MAX_HOST_LEN`] (its length).
    #[error("host of {0} characters exceeds the limit of {MAX_HOST_LEN}")]
    HostTooLong(usize),
    /// A `text` is longer than [`MAX_TEXT_LEN`] bytes (its length).
    #[error("text of {0} bytes exceeds the limit of {MAX_TEXT_LEN}")]
    TextTooLong(usize),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Record),
    Many(Vec<Record>),
}

/// Parse an etcd value: one record object or a non-empty array of them, each bounded in size.
pub fn parse_value(bytes: &[u8]) -> Result<Vec<Record>, RecordError> {
    let text = std::str::from_utf8(bytes).map_err(|_| RecordError::Utf8)?;
    let trimmed = text.trim_start();
    // Decide the shape first so that errors name the real problem, not the untagged enum.
    let records = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<Record>>(text)?
    } else {
        match serde_json::from_str::<OneOrMany>(text) {
            Ok(OneOrMany::One(r)) => vec![r],
            Ok(OneOrMany::Many(v)) => v,
            Err(_) => vec![serde_json::from_str::<Record>(text)?],
        }
    };
    if records.is_empty() {
        return Err(RecordError::Empty);
    }
    if records.len() > MAX_RECORDS_PER_VALUE {
        return Err(RecordError::TooMany(records.len()));
    }
    for r in &records {
        if r.host.len() > MAX_HOST_LEN {
            return Err(RecordError::HostTooLong(r.host.len()));
        }
        if r.text.len() > MAX_TEXT_LEN {
            return Err(RecordError::TextTooLong(r.text.len()));
        }
    }
    Ok(records)
}

/// Encode records as kube2sky writes them: an object for one record, an array for several.
pub fn encode_value(records: &[Record]) -> String {
    let result = match records {
        [one] => serde_json::to_string(one),
        many => serde_json::to_string(many),
    };
    // Serialising plain structs of strings and integers cannot fail.
    result.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_shape_and_order() {
        let r = Record::service("10.254.162.44", 0, 30);
        assert_eq!(
            encode_value(&[r]),
            r#"{"host":"10.254.162.44","priority":10,"weight":10,"ttl":30}"#
        );
        let r = Record::service("a.b.", 443, 30);
        assert_eq!(
            encode_value(&[r]),
            r#"{"host":"a.b.","port":443,"priority":10,"weight":10,"ttl":30}"#
        );
    }

    #[test]
    fn object_or_array() {
        assert_eq!(parse_value(br#"{"host":"1.2.3.4"}"#).unwrap().len(), 1);
        let v = parse_value(br#"[{"host":"1.2.3.4"},{"host":"::1","ttl":5}]"#).unwrap();
        assert_eq!(v[1].ttl, 5);
        assert_eq!(v[1].host, "::1");
    }

    #[test]
    fn unknown_fields_ignored() {
        let v = parse_value(br#"{"host":"1.2.3.4","extra":{"x":1}}"#).unwrap();
        assert_eq!(v[0].host, "1.2.3.4");
    }

    #[test]
    fn bad_values_rejected() {
        for bad in [
            &b"not json"[..],
            br#"{"host":5}"#,
            br#"{"port":"80"}"#,
            br#"{"port":70000}"#,
            br#"[]"#,
            br#""a string""#,
            br#"42"#,
            b"\xff\xfe",
        ] {
            assert!(
                parse_value(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(r#"{{"host":"{}"}}"#, "a".repeat(300));
        assert!(matches!(
            parse_value(long.as_bytes()),
            Err(RecordError::HostTooLong(300))
        ));
        let many = format!("[{}]", vec![r#"{"host":"1.1.1.1"}"#; 5000].join(","));
        assert!(matches!(
            parse_value(many.as_bytes()),
            Err(RecordError::TooMany(5000))
        ));
    }

    proptest::proptest! {
        #[test]
        fn json_round_trip(host in "[a-z0-9.:-]{0,60}", port: u16, priority: u16, weight: u16,
                           text in "\\PC{0,40}", mail: bool, ttl: u32, targetstrip in 0u32..10,
                           group in "[a-z]{0,8}", n in 1usize..4) {
            let r = Record { host, port, priority, weight, text, mail, ttl, targetstrip, group };
            let records = vec![r; n];
            let back = parse_value(encode_value(&records).as_bytes()).unwrap();
            proptest::prop_assert_eq!(back, records);
        }
    }
}
