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
        let as_f64 = as_number;
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
/// `key` equals `value`; also `!=`, `>`, `>=`, `<`, `<=` against a number).
pub fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    if path.trim().is_empty() {
        return Err("path is empty".into());
    }
    let mut out = Vec::new();
    for raw in split_path(path.trim()) {
        if raw.is_empty() {
            return Err(format!("{path:?} has an empty segment"));
        }
        match raw.find('[') {
            Some(open) => {
                let Some(inner) = raw[open + 1..].strip_suffix(']') else {
                    return Err(format!("{raw:?}: a filter is written name[key=value]"));
                };
                let filter = parse_filter(inner).ok_or_else(|| {
                    format!("{raw:?}: a filter is written name[key=value] (or !=, >, >=, <, <=)")
                })?;
                if open > 0 {
                    out.push(Segment::Key(raw[..open].to_string()));
                }
                out.push(filter);
            }
            None => match raw.parse::<usize>() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => out.push(Segment::Key(raw.to_string())),
            },
        }
    }
    Ok(out)
}

/// `key=value`, `key>=3` … inside brackets.
fn parse_filter(inner: &str) -> Option<Segment> {
    let at = inner.find(['=', '!', '<', '>'])?;
    let key = inner[..at].trim();
    let rest = &inner[at..];
    let (op, value) = [
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .into_iter()
    .find_map(|(s, op)| rest.strip_prefix(s).map(|v| (op, v.trim())))?;
    if key.is_empty() || value.is_empty() {
        return None;
    }
    let value = value.trim_matches('"').to_string();
    if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) && value.parse::<f64>().is_err() {
        return None;
    }
    Some(Segment::Filter(key.to_string(), op, value))
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
    /// Array items whose `key` compares with `value` by the op.
    Filter(String, Op, String),
}

impl Segment {
    fn keeps(&self, item: &Value) -> bool {
        let Segment::Filter(k, op, v) = self else {
            return true;
        };
        let Some(field) = item.get(k) else {
            return false;
        };
        let as_text = match field {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match op {
            Op::Eq => as_text == *v,
            Op::Ne => as_text != *v,
            _ => {
                let cond = Condition {
                    op: *op,
                    value: v.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
                };
                cond.holds(field)
            }
        }
    }
}

/// A path, or a function of paths: what an expectation selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Path(Vec<Segment>),
    /// How many values the path selects; a filter keeps every match and an
    /// array at the end counts its items.
    Count(Vec<Segment>),
    /// The sum of the numbers the path selects (every match of a filter).
    Sum(Vec<Segment>),
    /// First ÷ second; nothing when the second is 0.
    Ratio(Vec<Segment>, Vec<Segment>),
    /// First − second.
    Diff(Vec<Segment>, Vec<Segment>),
}

/// Functions a selector may use.
pub const FUNCTIONS: [&str; 4] = ["count", "sum", "ratio", "diff"];

/// Parses `a.b`, `count(items[retryable=true])`, `sum(rows.count)`,
/// `ratio(failures.sum, successes.sum)`, `diff(a, b)`.
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    let t = text.trim();
    let Some(open) = t.find('(') else {
        return parse_path(t).map(Selector::Path);
    };
    let name = t[..open].trim();
    let Some(args) = t[open + 1..].strip_suffix(')') else {
        return Err(format!(
            "{t:?}: a function is written name(path) and closes with )"
        ));
    };
    let args: Vec<&str> = args.split(',').map(str::trim).collect();
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "{name}() takes {n} path{}, got {}",
                if n == 1 { "" } else { "s" },
                args.len()
            ))
        }
    };
    match name {
        "count" => arity(1).and_then(|_| parse_path(args[0]).map(Selector::Count)),
        "sum" => arity(1).and_then(|_| parse_path(args[0]).map(Selector::Sum)),
        "ratio" => {
            arity(2)?;
            Ok(Selector::Ratio(parse_path(args[0])?, parse_path(args[1])?))
        }
        "diff" => {
            arity(2)?;
            Ok(Selector::Diff(parse_path(args[0])?, parse_path(args[1])?))
        }
        other => Err(format!(
            "unknown function {other:?}; available: {}",
            FUNCTIONS.join(", ")
        )),
    }
}

/// Every value `segments` reach; a filter keeps every match.
fn select_all<'a>(data: &'a Value, segments: &[Segment]) -> Option<Vec<&'a Value>> {
    let mut current = vec![data];
    for seg in segments {
        let reached = !current.is_empty();
        let mut next = Vec::new();
        for v in current {
            match seg {
                Segment::Key(k) => next.extend(v.get(k)),
                Segment::Index(i) => next.extend(v.get(*i)),
                Segment::Filter(..) => next.extend(v.as_array()?.iter().filter(|i| seg.keeps(i))),
            }
        }
        // A name or index that none of the values has: the path is not
        // there (a filter that keeps nothing is an answer: zero matches).
        if reached && next.is_empty() && !matches!(seg, Segment::Filter(..)) {
            return None;
        }
        current = next;
    }
    Some(current)
}

/// The value at `path` in `data`, or `None` when it is not there.
pub fn select<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    let segments = parse_path(path).ok()?;
    select_path(data, &segments)
}

fn select_path<'a>(data: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    let mut cur = data;
    for seg in segments {
        cur = match seg {
            Segment::Key(k) => cur.get(k)?,
            Segment::Index(i) => cur.get(*i)?,
            Segment::Filter(..) => cur.as_array()?.iter().find(|item| seg.keeps(item))?,
        };
    }
    Some(cur)
}

/// A number as the conditions read it (SQL numerics arrive as text).
pub fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// What `selector` finds in `data`: `None` when there is nothing there (no
/// such path, a null, a ratio over zero). A document with `"no_data":
/// true` (a probe that got an empty answer, such as a Prometheus query
/// without series) has no values at all.
pub fn evaluate(data: &Value, selector: &Selector) -> Option<Value> {
    if data.get("no_data") == Some(&Value::Bool(true)) {
        return None;
    }
    let number = |segments: &[Segment]| select_path(data, segments).and_then(as_number);
    let value = match selector {
        Selector::Path(p) => select_path(data, p).cloned(),
        Selector::Count(p) => {
            let all = select_all(data, p)?;
            let n = match (p.last(), all.as_slice()) {
                (Some(Segment::Filter(..)), _) => all.len(),
                (_, [Value::Array(items)]) => items.len(),
                (_, [Value::Null]) => return None,
                _ => all.len(),
            };
            Some(Value::from(n as u64))
        }
        Selector::Sum(p) => {
            let all = select_all(data, p)?;
            let numbers: Vec<f64> = match all.as_slice() {
                [Value::Array(items)] => items.iter().filter_map(as_number).collect(),
                _ => all.into_iter().filter_map(as_number).collect(),
            };
            Some(number_value(numbers.iter().sum()))
        }
        Selector::Ratio(a, b) => {
            let (a, b) = (number(a)?, number(b)?);
            (b != 0.0).then(|| number_value(a / b))
        }
        Selector::Diff(a, b) => Some(number_value(number(a)? - number(b)?)),
    };
    value.filter(|v| !v.is_null())
}

/// A float as JSON, integral values without a fraction.
fn number_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9e15 {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// [`evaluate`] on a selector written as text; `None` for a bad one too.
pub fn value_at(data: &Value, text: &str) -> Option<Value> {
    evaluate(data, &parse_selector(text).ok()?)
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
        assert!(parse_path("rows[n>x]").is_err());
    }

    #[test]
    fn functions_count_sum_and_compare_what_paths_select() {
        let data = json!({"body": {"items": [
            {"id": 1, "retryable": true, "attempts": 5},
            {"id": 2, "retryable": false, "attempts": 1},
            {"id": 3, "retryable": true, "attempts": 2}]},
            "failures": {"sum": 30}, "successes": {"sum": 10}, "zero": 0, "none": null});
        let v = |t: &str| value_at(&data, t);
        assert_eq!(v("count(body.items[retryable=true])"), Some(json!(2)));
        assert_eq!(v("count(body.items[attempts>=5])"), Some(json!(1)));
        assert_eq!(v("count(body.items[retryable=maybe])"), Some(json!(0)));
        assert_eq!(v("count(body.items)"), Some(json!(3)));
        assert_eq!(v("count(body.nothing)"), None);
        assert_eq!(v("sum(body.items[id>9].attempts)"), Some(json!(0)));
        assert_eq!(
            v("sum(body.items[retryable=true].attempts)"),
            Some(json!(7))
        );
        assert_eq!(v("ratio(failures.sum, successes.sum)"), Some(json!(3)));
        assert_eq!(v("diff(successes.sum, failures.sum)"), Some(json!(-20)));
        assert_eq!(v("ratio(failures.sum, zero)"), None);
        assert_eq!(v("none"), None);
        assert_eq!(v("body.items[attempts<2].id"), Some(json!(2)));
        assert!(
            parse_selector("median(a)")
                .unwrap_err()
                .contains("unknown function")
        );
        assert!(
            parse_selector("ratio(a)")
                .unwrap_err()
                .contains("takes 2 paths")
        );
        assert!(parse_selector("count(a").unwrap_err().contains("closes"));
        let empty = json!({"no_data": true, "count": 0, "series": []});
        assert_eq!(value_at(&empty, "count"), None);
    }
}
