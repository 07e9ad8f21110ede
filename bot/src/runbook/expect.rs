//! Expectations: select a value from an observation by a dotted path and
//! hold it against `warn_if` / `fail_if` conditions. Pure.

use serde_json::Value;

/// A comparison, as written in `warn_if` / `fail_if`: `> 100`, `!= 200`,
/// `== "ok"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.value)
    }
}

/// Parses `> 100`, `<= 0.5`, `== "ok"`, `!= 200`, `== true`.
pub fn parse_condition(text: &str) -> Result<Condition, String> {
    let t = text.trim();
    let (op, rest) = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .into_iter()
    .find_map(|(s, op)| t.strip_prefix(s).map(|r| (op, r.trim())))
    .ok_or_else(|| format!("{t:?} does not start with <, <=, >, >=, == or !="))?;
    if rest.is_empty() {
        return Err(format!("{t:?} has no value after {}", op.as_str()));
    }
    let value: Value = if let Some(s) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Value::String(s.to_string())
    } else if let Some(s) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        Value::String(s.to_string())
    } else {
        serde_json::from_str(rest)
            .map_err(|_| format!("{rest:?} is not a number, true/false or a quoted string"))?
    };
    if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) && !value.is_number() {
        return Err(format!("{} needs a number, got {value}", op.as_str()));
    }
    Ok(Condition { op, value })
}

impl Condition {
    /// Whether `observed` meets the condition. A number compared with a
    /// string that parses as one (SQL numerics arrive as strings) counts as
    /// that number; anything else that cannot be compared does not hold.
    pub fn holds(&self, observed: &Value) -> bool {
        let as_f64 = |v: &Value| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        };
        match self.op {
            Op::Eq | Op::Ne => {
                let equal = match (&self.value, observed) {
                    (Value::Number(_), o) => as_f64(o) == as_f64(&self.value),
                    (a, b) => a == b,
                };
                (self.op == Op::Eq) == equal
            }
            _ => match (as_f64(observed), as_f64(&self.value)) {
                (Some(o), Some(t)) => match self.op {
                    Op::Lt => o < t,
                    Op::Le => o <= t,
                    Op::Gt => o > t,
                    Op::Ge => o >= t,
                    _ => false,
                },
                _ => false,
            },
        }
    }
}

/// Syntax check of a path: segments separated by dots; a segment is a
/// name, an index, or `name[key=value]` (first element of an array whose
/// `key` equals `value`).
pub fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    if path.trim().is_empty() {
        return Err("path is empty".into());
    }
    let mut out = Vec::new();
    for raw in split_path(path) {
        if raw.is_empty() {
            return Err(format!("{path:?} has an empty segment"));
        }
        match raw.find('[') {
            Some(open) => {
                let Some(inner) = raw[open + 1..].strip_suffix(']') else {
                    return Err(format!("{raw:?}: a filter is written name[key=value]"));
                };
                let Some((k, v)) = inner.split_once('=') else {
                    return Err(format!("{raw:?}: a filter is written name[key=value]"));
                };
                if open > 0 {
                    out.push(Segment::Key(raw[..open].to_string()));
                }
                out.push(Segment::Filter(
                    k.trim().to_string(),
                    v.trim().trim_matches('"').to_string(),
                ));
            }
            None => match raw.parse::<usize>() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => out.push(Segment::Key(raw.to_string())),
            },
        }
    }
    Ok(out)
}

/// Splits on dots outside `[...]` (filter values may contain dots).
fn split_path(path: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                parts.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&path[start..]);
    parts
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
    Filter(String, String),
}

/// The value at `path` in `data`, or `None` when it is not there.
pub fn select<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    let segments = parse_path(path).ok()?;
    let mut cur = data;
    for seg in &segments {
        cur = match seg {
            Segment::Key(k) => cur.get(k)?,
            Segment::Index(i) => cur.get(*i)?,
            Segment::Filter(k, v) => cur.as_array()?.iter().find(|item| match item.get(k) {
                Some(Value::String(s)) => s == v,
                Some(other) => other.to_string().as_str() == v,
                None => false,
            })?,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_parse_numbers_strings_and_booleans() {
        assert_eq!(
            parse_condition("> 100").unwrap(),
            Condition {
                op: Op::Gt,
                value: json!(100)
            }
        );
        assert_eq!(parse_condition("!= \"ok\"").unwrap().value, json!("ok"));
        assert_eq!(parse_condition("== true").unwrap().value, json!(true));
        assert!(
            parse_condition("~ 3")
                .unwrap_err()
                .contains("does not start with")
        );
        assert!(
            parse_condition("> ok")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            parse_condition("> \"a\"")
                .unwrap_err()
                .contains("needs a number")
        );
    }

    #[test]
    fn numeric_strings_from_sql_compare_as_numbers() {
        assert!(parse_condition("> 10").unwrap().holds(&json!("12.5")));
        assert!(parse_condition("== 200").unwrap().holds(&json!(200)));
        assert!(!parse_condition("> 10").unwrap().holds(&json!(null)));
    }

    #[test]
    fn paths_select_keys_indexes_and_filtered_rows() {
        let data = json!({"rows": [{"status": "PENDING", "count": 4}, {"status": "SENT", "count": 9}],
                          "body": {"by_status": {"failed": 2}}});
        assert_eq!(select(&data, "rows.1.count"), Some(&json!(9)));
        assert_eq!(select(&data, "rows[status=PENDING].count"), Some(&json!(4)));
        assert_eq!(select(&data, "body.by_status.failed"), Some(&json!(2)));
        assert_eq!(select(&data, "rows[status=FAILED].count"), None);
        assert!(parse_path("rows[status].count").is_err());
    }
}
