//! Deserialisers that never fail on a wrong type: a field of the wrong shape becomes
//! `Bad` instead of failing the whole list page (which would stall every other object of
//! that kind). Objects decode straight from the wire into these; unknown fields are skipped
//! without being held.
//!
//! Why not `serde_with` (`DefaultOnError`, `VecSkipError`): those collapse a wrong value into
//! the default, so "missing" and "wrong type" become one. The objects need the three states
//! apart — a missing `ports` is normal, a `ports` that is not a list skips the object with a
//! warning and `kube2sky_skipped_objects_total` (see `is_bad` in `k8s_objects`), and a bad
//! element drops only that port or address while the caller still learns it was there. And
//! `DefaultOnError` first buffers the whole value into a `Content` tree to retry it,
//! which is what decoding straight off the wire avoids for list pages of 10⁵ objects; these
//! visitors decide on the token at hand and skip the rest with `IgnoredAny`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{
    BoolDeserializer, F64Deserializer, I64Deserializer, MapAccessDeserializer, StrDeserializer,
    U64Deserializer,
};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A scalar (string, number, bool) that may be missing or of the wrong type.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Scalar<T> {
    /// The field is absent (or null).
    #[default]
    Missing,
    /// A value of the right type.
    Ok(T),
    /// A value of another type.
    Bad,
}

/// A JSON object decoded as `T` (whose fields are themselves lenient), missing, or not an object.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Obj<T> {
    /// The field is absent (or null).
    #[default]
    Missing,
    /// An object, decoded.
    Ok(T),
    /// Not an object.
    Bad,
}

/// A JSON array of lenient elements, missing, or not an array.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum List<T> {
    /// The field is absent (or null).
    #[default]
    Missing,
    /// An array, every element kept (each one lenient itself).
    Ok(Vec<T>),
    /// Not an array.
    Bad,
}

impl<T> Scalar<T> {
    /// The value, when present and well typed.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Scalar::Ok(v) => Some(v),
            _ => None,
        }
    }
    /// Whether the value was of the wrong type.
    pub fn is_bad(&self) -> bool {
        matches!(self, Scalar::Bad)
    }
}

impl<T> Obj<T> {
    /// The object, when present and an object.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Obj::Ok(v) => Some(v),
            _ => None,
        }
    }
    /// Whether the value was not an object.
    pub fn is_bad(&self) -> bool {
        matches!(self, Obj::Bad)
    }
}

impl<T> List<T> {
    /// The elements; empty when missing or bad.
    pub fn items(&self) -> &[T] {
        match self {
            List::Ok(v) => v,
            _ => &[],
        }
    }
    /// Whether the value was not an array.
    pub fn is_bad(&self) -> bool {
        matches!(self, List::Bad)
    }
}

type ValueError = serde::de::value::Error;

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<T> ScalarVisitor<T> {
    fn wrap<E>(r: Result<T, E>) -> Scalar<T> {
        r.map_or(Scalar::Bad, Scalar::Ok)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ScalarVisitor<T> {
    type Value = Scalar<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Missing)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Missing)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Self::wrap(T::deserialize(
            BoolDeserializer::<ValueError>::new(v),
        )))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Self::wrap(T::deserialize(
            I64Deserializer::<ValueError>::new(v),
        )))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Self::wrap(T::deserialize(
            U64Deserializer::<ValueError>::new(v),
        )))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Self::wrap(T::deserialize(
            F64Deserializer::<ValueError>::new(v),
        )))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Self::wrap(T::deserialize(
            StrDeserializer::<ValueError>::new(v),
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(Scalar::Bad)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Scalar::Bad)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Scalar<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj::Missing)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj::Missing)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Obj::Ok)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Obj::Bad)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Obj::Bad)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Obj::Bad)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Obj::Bad)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Obj::Bad)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Obj::Bad)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor(PhantomData))
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(List::Missing)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(List::Missing)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<T>()? {
            out.push(item);
        }
        Ok(List::Ok(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(List::Bad)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(List::Bad)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(List::Bad)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(List::Bad)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(List::Bad)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(List::Bad)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    struct Inner {
        #[serde(default)]
        a: Scalar<String>,
        #[serde(default)]
        n: Scalar<u16>,
    }

    #[derive(Debug, Deserialize, Default, PartialEq)]
    struct Outer {
        #[serde(default)]
        inner: Obj<Inner>,
        #[serde(default)]
        list: List<Obj<Inner>>,
        #[serde(default)]
        strings: List<Scalar<String>>,
        #[serde(default)]
        labels: Obj<BTreeMap<String, Scalar<String>>>,
    }

    #[test]
    fn good_values_decode() {
        let o: Outer = serde_json::from_str(
            r#"{"inner":{"a":"x","n":80,"junk":{"deep":[1,2]}},"list":[{"a":"y"}],
                "strings":["s"],"labels":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(o.inner.ok().unwrap().a, Scalar::Ok("x".into()));
        assert_eq!(o.inner.ok().unwrap().n, Scalar::Ok(80));
        assert_eq!(o.list.items().len(), 1);
        assert_eq!(o.strings.items(), &[Scalar::Ok("s".to_string())]);
        assert_eq!(o.labels.ok().unwrap()["k"], Scalar::Ok("v".into()));
    }

    #[test]
    fn wrong_types_become_bad_without_failing_the_document() {
        let o: Outer = serde_json::from_str(
            r#"{"inner":{"a":5,"n":70000},"list":[{"a":"ok"},"nope",{"n":"80"},null],
                "strings":{"x":1},"labels":["k"]}"#,
        )
        .unwrap();
        let inner = o.inner.ok().unwrap();
        assert!(inner.a.is_bad());
        assert!(inner.n.is_bad());
        let list = o.list.items();
        assert_eq!(list.len(), 4);
        assert!(list[1].is_bad());
        assert!(list[2].ok().unwrap().n.is_bad());
        assert_eq!(list[3], Obj::Missing);
        assert!(o.strings.is_bad());
        assert!(o.labels.is_bad());

        let o: Outer =
            serde_json::from_str(r#"{"inner":"str","list":7,"strings":[[1],{"a":1},true]}"#)
                .unwrap();
        assert!(o.inner.is_bad());
        assert!(o.list.is_bad());
        assert!(o.strings.items().iter().all(Scalar::is_bad));
        let o: Outer = serde_json::from_str(r#"{"inner":null}"#).unwrap();
        assert_eq!(o, Outer::default());
    }
}
