//! The contract between kube2sky and skydns: the SkyDNS record value (`record`), the mapping
//! between DNS names and etcd keys (`key`), and the Kubernetes key layout (`layout`).
//!
//! Nothing else in the workspace derives a key or parses a value by itself.

pub mod key;
pub mod layout;
pub mod record;

pub use key::{
    key_to_name, labels_to_path, name_to_key, name_to_path, path_to_name, prefix_end, Prefix,
    PrefixError,
};
pub use layout::{dashed_ip, parse_dashed_ip, ptr_path, Tree, Zone};
pub use record::{
    encode_value, parse_value, Record, RecordError, DEFAULT_PRIORITY, DEFAULT_WEIGHT,
};
