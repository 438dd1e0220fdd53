//! Label and field selectors as the API server reads them from `labelSelector` and
//! `fieldSelector`: equality, inequality, set-based (`in`, `notin`), existence and numeric
//! comparisons for labels; `=`, `==`, `!=` on a per-resource list of supported fields.

use serde_json::Value;

use super::resources::ResourceType;

#[derive(Debug, Clone)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 316
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Split on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced parenthesis in {s:?}"))?;
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parenthesis in {s:?}"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn checked_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if valid_key(k) {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key {k:?}"))
    }
}

fn checked_value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if valid_value(v) {
        Ok(v.to_string())
    } else {
        Err(format!("invalid label value: {v:?}"))
    }
}

fn parse_label_req(term: &str) -> Result<LabelReq, String> {
    let err = |e: String| format!("unable to parse requirement: {e}");
    if let Some(rest) = term.strip_prefix('!') {
        return Ok(LabelReq::NotExists(checked_key(rest).map_err(err)?));
    }
    if let Some(open) = term.find('(') {
        let inner = term[open + 1..]
            .trim_end()
            .strip_suffix(')')
            .ok_or_else(|| err(format!("missing ')' in {term:?}")))?;
        let words: Vec<&str> = term[..open].split_whitespace().collect();
        let [key, op] = words.as_slice() else {
            return Err(err(format!("expected `key in (...)` in {term:?}")));
        };
        let key = checked_key(key).map_err(err)?;
        let values = inner
            .split(',')
            .map(checked_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        return match *op {
            "in" => Ok(LabelReq::In(key, values)),
            "notin" => Ok(LabelReq::NotIn(key, values)),
            other => Err(err(format!("unknown operator {other:?}"))),
        };
    }
    for (op, ctor) in [("!=", 0u8), ("==", 1), ("=", 1), (">", 2), ("<", 3)] {
        if let Some((k, v)) = term.split_once(op) {
            let key = checked_key(k).map_err(err)?;
            return match ctor {
                0 => Ok(LabelReq::NotEq(key, checked_value(v).map_err(err)?)),
                1 => Ok(LabelReq::Eq(key, checked_value(v).map_err(err)?)),
                _ => {
                    let n: i64 = v
                        .trim()
                        .parse()
                        .map_err(|_| err(format!("invalid integer value {v:?}")))?;
                    Ok(if ctor == 2 {
                        LabelReq::Gt(key, n)
                    } else {
                        LabelReq::Lt(key, n)
                    })
                }
            };
        }
    }
    Ok(LabelReq::Exists(checked_key(term).map_err(err)?))
}

impl LabelSelector {
    /// Parse `a=b,c!=d,e in (x,y),!f`; an error message on malformed input.
    pub(crate) fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for term in split_top_level(s)? {
            let term = term.trim();
            if term.is_empty() {
                return Err(format!("unable to parse requirement: empty term in {s:?}"));
            }
            reqs.push(parse_label_req(term)?);
        }
        Ok(LabelSelector(reqs))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
            LabelReq::Gt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelReq::Lt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

/// The string form of a field as the API server's field-set conversion renders it.
fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

impl FieldSelector {
    /// Parse `metadata.name=x,spec.nodeName!=y` for resource `rt`; unsupported fields are
    /// an error like the real server's "field label not supported".
    pub(crate) fn parse(s: &str, rt: &ResourceType) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(reqs));
        }
        for term in s.split(',') {
            let term = term.trim();
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if !rt.supports_field(field) {
                return Err(format!("field label not supported: {field}"));
            }
            reqs.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|(f, equal, v)| (field_value(obj, f) == *v) == *equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "1"}}});
        let ok = |s: &str| LabelSelector::parse(s).unwrap().matches(&obj);
        assert!(ok(""));
        assert!(ok("app=web"));
        assert!(ok("app==web,tier=1"));
        assert!(!ok("app=db"));
        assert!(ok("app!=db"));
        assert!(ok("missing!=x"));
        assert!(ok("app in (db, web)"));
        assert!(!ok("app notin (db,web)"));
        assert!(ok("app,!missing"));
        assert!(ok("tier>0,tier<2"));
        assert!(LabelSelector::parse("a=b=c").is_err());
        assert!(LabelSelector::parse("a in (b").is_err());
        assert!(LabelSelector::parse("a,,b").is_err());
        assert!(LabelSelector::parse("a))").is_err());
    }
}
