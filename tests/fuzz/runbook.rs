//! The runbook loader: the bundled runbooks mutated, copied, and arbitrary
//! text (see the crate doc for the properties).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use firstline::runbook::load::{Catalog, bundled_sources};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::{Text, fuzz};

/// The bundled runbooks: (name, text).
static BUNDLED: LazyLock<Vec<(String, String)>> = LazyLock::new(bundled_sources);

#[test]
fn no_runbook_text_panics_the_loader_or_is_dropped_without_a_problem_naming_its_file() {
    fuzz("runbook", 12_000, sources(), |sources| {
        let sources: Vec<(String, String)> = sources
            .into_iter()
            .map(|(name, Text(text))| (name, text))
            .collect();
        check(&sources)
    });
}

#[test]
fn the_bundled_runbooks_the_mutations_start_from_load_without_problems() {
    assert!(!BUNDLED.is_empty());
    let (catalog, problems) = Catalog::build(&BUNDLED, None);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(catalog.entries.len(), BUNDLED.len());
}

/// The properties of one build; `Ok` names the outcome.
fn check(sources: &[(String, String)]) -> Result<&'static str, String> {
    let (catalog, problems) = Catalog::build(sources, None);
    let mut troubled = BTreeSet::new();
    for problem in &problems {
        let Some((name, text)) = sources.iter().find(|(name, _)| *name == problem.file) else {
            return Err(format!("a problem names no file it was given: {problem:?}"));
        };
        if problem.message.trim().is_empty() {
            return Err(format!("a problem without a message: {problem:?}"));
        }
        if !problem.to_string().starts_with(name.as_str()) {
            return Err(format!("a problem does not start with its file: {problem}"));
        }
        let lines = text.lines().count().max(1);
        if let Some(line) = problem.line
            && !(1..=lines + 1).contains(&line)
        {
            return Err(format!(
                "{name} has {lines} lines, the problem says {line}: {problem}"
            ));
        }
        // A warning leaves the runbook loaded; only errors leave it out.
        if !problem.warning {
            troubled.insert(name.as_str());
        }
    }
    let mut ids = BTreeSet::new();
    for entry in &catalog.entries {
        if troubled.contains(entry.file.as_str()) {
            return Err(format!("{} was loaded and has problems too", entry.file));
        }
        if !ids.insert(entry.runbook.id.as_str()) {
            return Err(format!(
                "two runbooks loaded with id {:?}",
                entry.runbook.id
            ));
        }
    }
    for (name, _) in sources {
        let loaded = catalog.entries.iter().any(|e| e.file == *name);
        if !loaded && !troubled.contains(name.as_str()) {
            return Err(format!("{name} was left out without a problem"));
        }
    }
    Ok(match (catalog.entries.is_empty(), problems.is_empty()) {
        (false, true) => "all loaded",
        (false, false) => "some loaded",
        (true, _) => "none loaded",
    })
}

// ----------------------------------------------------------------------
// Inputs

/// One to three files, each named after its position so names are unique.
fn sources() -> impl Strategy<Value = Vec<(String, Text)>> {
    vec(source_text(), 1..4).prop_map(|texts| {
        texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| (format!("fuzz/{i}-runbook.toml"), Text(text)))
            .collect()
    })
}

fn source_text() -> impl Strategy<Value = String> {
    let count = BUNDLED.len();
    prop_oneof![
        1 => any::<String>(),
        1 => vec(select(TOML_SOUP), 0..30).prop_map(|t| t.concat()),
        1 => (0..count).prop_map(|i| BUNDLED[i].1.clone()),
        5 => (0..count, vec(edit(), 1..6)).prop_map(|(i, edits)| {
            let mut text = BUNDLED[i].1.clone();
            for edit in &edits {
                edit.apply(&mut text);
            }
            text
        }),
        5 => (0..count, vec(tree_edit(), 1..3)).prop_map(|(i, edits)| {
            let mut table: toml::Table =
                toml::from_str(&BUNDLED[i].1).expect("bundled runbooks are TOML");
            for edit in &edits {
                edit.apply(&mut table);
            }
            toml::to_string(&table).unwrap_or_else(|_| BUNDLED[i].1.clone())
        }),
    ]
}

/// An edit of a runbook read as TOML, which keeps it TOML so that the
/// linter, not the parser, has to find what is wrong. `at` picks a node
/// (or a string, for `Text`) by its number in document order, modulo
/// their count.
#[derive(Debug, Clone)]
enum TreeEdit {
    /// `linted`: only among the strings the linter reads (ids, severity,
    /// probes, expectations, matchers, kinds, trends).
    Text {
        at: usize,
        linted: bool,
        with: String,
    },
    Replace {
        at: usize,
        with: toml::Value,
    },
    Remove {
        at: usize,
        which: usize,
    },
    Insert {
        at: usize,
        key: String,
        with: toml::Value,
    },
    /// Appends a copy of an array's element: checks, actions and matchers
    /// given twice.
    Duplicate {
        at: usize,
        which: usize,
    },
}

fn tree_edit() -> impl Strategy<Value = TreeEdit> {
    let at = any::<usize>();
    prop_oneof![
        8 => (at, any::<bool>(), lint_string())
            .prop_map(|(at, linted, with)| TreeEdit::Text { at, linted, with }),
        1 => (at, toml_tree()).prop_map(|(at, with)| TreeEdit::Replace { at, with }),
        1 => (at, any::<usize>()).prop_map(|(at, which)| TreeEdit::Remove { at, which }),
        2 => (at, select(RUNBOOK_KEYS), toml_tree())
            .prop_map(|(at, key, with)| TreeEdit::Insert { at, key: key.to_string(), with }),
        1 => (at, any::<usize>()).prop_map(|(at, which)| TreeEdit::Duplicate { at, which }),
    ]
}

impl TreeEdit {
    fn apply(&self, root: &mut toml::Table) {
        let mut root_value = toml::Value::Table(std::mem::take(root));
        match self {
            TreeEdit::Text { at, linted, with } => {
                if let Some(s) = toml_string(&mut root_value, *at, *linted) {
                    *s = with.clone();
                }
            }
            TreeEdit::Replace { at, with } => {
                // The root stays a table.
                let n = toml_count(&root_value);
                if n > 1 {
                    *toml_node(&mut root_value, 1 + at % (n - 1)) = with.clone();
                }
            }
            TreeEdit::Remove { at, which } => match toml_node(&mut root_value, *at) {
                toml::Value::Table(t) if !t.is_empty() => {
                    let key = t.keys().nth(which % t.len()).cloned();
                    t.remove(&key.expect("in range"));
                }
                toml::Value::Array(items) if !items.is_empty() => {
                    items.remove(which % items.len());
                }
                _ => {}
            },
            TreeEdit::Insert { at, key, with } => match toml_node(&mut root_value, *at) {
                toml::Value::Table(t) => {
                    t.insert(key.clone(), with.clone());
                }
                toml::Value::Array(items) => items.push(with.clone()),
                _ => {}
            },
            TreeEdit::Duplicate { at, which } => {
                if let toml::Value::Array(items) = toml_node(&mut root_value, *at)
                    && !items.is_empty()
                {
                    let item = items[which % items.len()].clone();
                    items.push(item);
                }
            }
        }
        if let toml::Value::Table(t) = root_value {
            *root = t;
        }
    }
}

fn toml_count(v: &toml::Value) -> usize {
    1 + match v {
        toml::Value::Array(items) => items.iter().map(toml_count).sum(),
        toml::Value::Table(t) => t.values().map(toml_count).sum(),
        _ => 0,
    }
}

/// Node number `n` (modulo the count) in document order.
fn toml_node(root: &mut toml::Value, n: usize) -> &mut toml::Value {
    fn go<'a>(v: &'a mut toml::Value, left: &mut usize) -> Option<&'a mut toml::Value> {
        if *left == 0 {
            return Some(v);
        }
        *left -= 1;
        match v {
            toml::Value::Array(items) => items.iter_mut().find_map(|item| go(item, left)),
            toml::Value::Table(t) => t.iter_mut().find_map(|(_, item)| go(item, left)),
            _ => None,
        }
    }
    let mut left = n % toml_count(root);
    go(root, &mut left).expect("n is below the node count")
}

/// String number `n` (modulo their count), if there is any; `linted`:
/// only strings under a key in [`LINTED_KEYS`].
fn toml_string(root: &mut toml::Value, n: usize, linted: bool) -> Option<&mut String> {
    fn strings<'a>(v: &'a mut toml::Value, key: &str, out: &mut Vec<(&'a mut String, bool)>) {
        match v {
            toml::Value::String(s) => out.push((s, LINTED_KEYS.contains(&key))),
            toml::Value::Array(items) => {
                for item in items {
                    strings(item, key, out);
                }
            }
            toml::Value::Table(t) => {
                for (k, item) in t.iter_mut() {
                    strings(item, k, out);
                }
            }
            _ => {}
        }
    }
    let mut all = Vec::new();
    strings(root, "", &mut all);
    if linted {
        all.retain(|(_, l)| *l);
    }
    if all.is_empty() {
        return None;
    }
    let i = n % all.len();
    Some(all.swap_remove(i).0)
}

/// The keys whose strings the linter reads.
const LINTED_KEYS: &[&str] = &[
    "id",
    "severity",
    "alertname",
    "name",
    "op",
    "value",
    "kind",
    "target",
    "query",
    "method",
    "path",
    "metric",
    "stream",
    "consumer",
    "warn_if",
    "fail_if",
    "check",
    "trend",
];

/// A TOML value of any type.
fn toml_tree() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        4 => lint_string().prop_map(toml::Value::String),
        1 => any::<i64>().prop_map(toml::Value::Integer),
        1 => select(vec![0i64, 1, 2, -1, 4_294_967_296, i64::MAX]).prop_map(toml::Value::Integer),
        1 => any::<f64>().prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
        1 => select(vec!["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00"]).prop_map(|d| {
            toml::Value::Datetime(d.parse().expect("a TOML datetime"))
        }),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            vec((select(RUNBOOK_KEYS), inner), 0..4).prop_map(|kv| {
                toml::Value::Table(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// Strings the linter has an opinion about, and any other.
fn lint_string() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(LINT_STRINGS).prop_map(String::from),
        2 => any::<String>(),
        1 => "\\PC{0,16}",
        1 => (any::<char>(), 1_000..30_000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// The field names of the runbook format, for inserted keys.
const RUNBOOK_KEYS: &[&str] = &[
    "version",
    "id",
    "title",
    "title_en",
    "source",
    "seed",
    "section",
    "failure_modes",
    "severity",
    "summary",
    "match",
    "alertname",
    "labels",
    "name",
    "op",
    "value",
    "checks",
    "probe",
    "kind",
    "target",
    "query",
    "method",
    "path",
    "attempts",
    "headers",
    "range",
    "duration_s",
    "step_s",
    "metric",
    "stream",
    "consumer",
    "max_rows",
    "expect",
    "warn_if",
    "fail_if",
    "meaning",
    "informational",
    "timeout_ms",
    "actions",
    "reversible",
    "params",
    "recovery",
    "check",
    "trend",
    "threshold",
    "samples",
    "interval_s",
    "notes",
    "links",
    "url",
    "bogus",
];

const LINT_STRINGS: &[&str] = &[
    "",
    " ",
    "P1",
    "p2",
    "P4",
    "sev1",
    "critical",
    "UPPER-case",
    "with space",
    "dup",
    "scalar",
    "rows[status=PENDING].count",
    "rows[status].count",
    "rows[status=PENDING",
    "a..b",
    ".",
    "[",
    "]",
    "0",
    "> 100",
    ">= 0.5",
    "<= 'a'",
    "> x",
    "== ",
    "~ 3",
    "== true",
    "!= \"ok\"",
    "== 1e400",
    "> -",
    "{{ labels.service }}",
    "{{ incident.id }}",
    "{{ now }}",
    "{{ secret }}",
    "{{ labels.",
    "{{",
    "}}",
    "{% for x in y %}{{ x }}{% endfor %}",
    "{% for %}",
    "{% endfor %}",
    "{% if labels.a %}",
    "{% macro m() %}{% endmacro %}",
    "{% include 'x' %}",
    "{% set x = 1 %}{{ x }}",
    "{{ x|upper }}",
    "{{ ((((((((((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))))))))))) }}",
    "{{ [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ }}",
    "{{ a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p }}",
    "{# unclosed",
    "{{ 'unclosed }}",
    "SELECT 1",
    "SELECT 1; DROP TABLE x",
    "SELECT 1;",
    "SELECT $1",
    "SELECT '{{ x }}'",
    "sum(rate(x[5m])",
    "sum(rate(x[5m]))",
    "{job=\"a\"",
    "x{a=\"(\"}",
    "`",
    "'",
    "POST",
    "GET",
    "HEAD",
    "=",
    "!=",
    "=~",
    "!~",
    "~",
    "(",
    "(?P<",
    "\\",
    "a{1000}{1000}{1000}",
    "(a|b)*c",
    "[[:alpha:]]",
    "\\p{Greek}+",
    "(?i)notification.*",
    "http",
    "sql",
    "prometheus",
    "metrics",
    "nats",
    "redis",
    "tcp",
    "bogus",
    "restart",
    "manual",
    "rollback",
    "decreasing",
    "not_increasing",
    "below",
    "backlog_stale",
    "\u{0}",
    "\u{feff}",
    "通知が届かない",
    "🔥",
    "\u{202e}",
    "e\u{301}",
    "line\nbreak",
    "id = \"x\"",
];

/// An edit of a runbook's text; line numbers and positions are taken
/// modulo the text's.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize, usize),
    SwapLines(usize, usize),
    /// Replaces what follows the `=` of the n-th `key = value` line.
    ReplaceValue(usize, String),
    /// Exchanges the values of two `key = value` lines.
    SwapValues(usize, usize),
    Truncate(usize),
    Insert(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let n = any::<usize>();
    prop_oneof![
        2 => n.prop_map(Edit::DeleteLine),
        1 => (n, any::<usize>()).prop_map(|(a, b)| Edit::DuplicateLine(a, b)),
        1 => (n, any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        5 => (n, toml_value()).prop_map(|(a, v)| Edit::ReplaceValue(a, v)),
        2 => (n, any::<usize>()).prop_map(|(a, b)| Edit::SwapValues(a, b)),
        1 => n.prop_map(Edit::Truncate),
        2 => (n, inserted()).prop_map(|(a, s)| Edit::Insert(a, s)),
    ]
}

impl Edit {
    fn apply(&self, text: &mut String) {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.is_empty() {
            return;
        }
        let len = lines.len();
        let assignments: Vec<usize> = (0..len).filter(|&i| lines[i].contains(" = ")).collect();
        match self {
            Edit::DeleteLine(a) => {
                lines.remove(a % len);
            }
            Edit::DuplicateLine(a, b) => {
                let line = lines[a % len].clone();
                lines.insert(b % (len + 1), line);
            }
            Edit::SwapLines(a, b) => lines.swap(a % len, b % len),
            Edit::ReplaceValue(a, value) if !assignments.is_empty() => {
                let i = assignments[a % assignments.len()];
                let (key, _) = lines[i].split_once(" = ").expect("an assignment");
                lines[i] = format!("{key} = {value}");
            }
            Edit::SwapValues(a, b) if !assignments.is_empty() => {
                let (i, j) = (
                    assignments[a % assignments.len()],
                    assignments[b % assignments.len()],
                );
                let (ki, vi) = lines[i].split_once(" = ").expect("an assignment");
                let (kj, vj) = lines[j].split_once(" = ").expect("an assignment");
                let (new_i, new_j) = (format!("{ki} = {vj}"), format!("{kj} = {vi}"));
                lines[i] = new_i;
                lines[j] = new_j;
            }
            Edit::Truncate(at) => {
                let at = floor_char_boundary(text, at % (text.len() + 1));
                text.truncate(at);
                return;
            }
            Edit::Insert(at, s) => {
                let at = floor_char_boundary(text, at % (text.len() + 1));
                text.insert_str(at, s);
                return;
            }
            Edit::ReplaceValue(..) | Edit::SwapValues(..) => {}
        }
        *text = lines.join("\n");
        text.push('\n');
    }
}

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A TOML value of any type, or something that only looks like one, with
/// the strings the linter has opinions about.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(TOML_VALUES).prop_map(String::from),
        2 => any::<String>().prop_map(|s| toml_basic_string(&s)),
        1 => any::<String>(),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:?}")),
        1 => (any::<char>(), 1_000..50_000usize).prop_map(|(c, n)| toml_basic_string(&c.to_string().repeat(n))),
    ]
}

/// `s` as a TOML basic string.
fn toml_basic_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn inserted() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(TOML_SOUP).prop_map(String::from),
        2 => any::<String>(),
        1 => "\\PC{0,16}",
        1 => any::<char>().prop_map(String::from),
    ]
}

const TOML_VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "4294967296",
    "18446744073709551616",
    "9223372036854775807",
    "1e400",
    "nan",
    "-inf",
    "0.5",
    "true",
    "false",
    "\"\"",
    "\" \"",
    "\"P1\"",
    "\"p2\"",
    "\"P4\"",
    "\"critical\"",
    "\"UPPER-case\"",
    "\"dup\"",
    "\"scalar\"",
    "\"rows[status=PENDING].count\"",
    "\"rows[status].count\"",
    "\"a..b\"",
    "\".\"",
    "\"> 100\"",
    "\"<= 'a'\"",
    "\"> x\"",
    "\"== \"",
    "\"~ 3\"",
    "\"== true\"",
    "\"!= \\\"ok\\\"\"",
    "\"{{ labels.service }}\"",
    "\"{{ secret }}\"",
    "\"{{ labels.\"",
    "\"{% for x in y %}\"",
    "\"{% endfor %}\"",
    "\"{{ ((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))) }}\"",
    "\"{{ a|b|c|d|e }}\"",
    "\"{#\"",
    "\"SELECT 1; DROP TABLE x\"",
    "\"SELECT $1\"",
    "\"SELECT '{{ x }}'\"",
    "\"sum(rate(x[5m])\"",
    "\"sum(rate(x[5m]))\"",
    "\"{job=\\\"a\\\"\"",
    "\"`\"",
    "\"POST\"",
    "\"GET\"",
    "\"=~\"",
    "\"!~\"",
    "\"~\"",
    "\"(?P<\"",
    "\"\\\\\"",
    "\"[\"",
    "\"a{1000}{1000}{1000}\"",
    "\"(a|b)*c\"",
    "\"http\"",
    "\"sql\"",
    "\"prometheus\"",
    "\"metrics\"",
    "\"nats\"",
    "\"redis\"",
    "\"tcp\"",
    "\"bogus\"",
    "\"restart\"",
    "\"decreasing\"",
    "\"below\"",
    "\"\\u0000\"",
    "\"\\uD800\"",
    "\"\\U0010FFFF\"",
    "\"通知が届かない\"",
    "\"🔥\"",
    "\"\u{202e}\"",
    "'literal'",
    "'''multi\nline'''",
    "\"\"\"\nbasic\nmulti\"\"\"",
    "\"\"\"",
    "'''",
    "[]",
    "[1, \"a\", true]",
    "[[]]",
    "[{ name = \"service\", op = \"=~\", value = \"(\" }]",
    "[{ name = \"service\", op = \"~\", value = \"x\" }]",
    "[{ path = \"scalar\" }]",
    "[{ path = \"\", warn_if = \"> 0\" }]",
    "{}",
    "{ kind = \"bogus\", target = \"x\" }",
    "{ kind = \"http\", target = \"x\", path = \"/\", method = \"DELETE\" }",
    "{ seed = 1, section = [] }",
    "1979-05-27T07:32:00Z",
    "1979-05-27",
    "07:32:00",
    "0x7f",
    "0o777",
    "0b11",
    "1_000",
    "+1",
    "=",
    "",
];

const TOML_SOUP: &[&str] = &[
    "version = 1\n",
    "id = \"x\"\n",
    "title = \"t\"\n",
    "title_en = \"t\"\n",
    "severity = \"P2\"\n",
    "source = { seed = \"s\", section = \"1\" }\n",
    "[match]\n",
    "alertname = [\"A\"]\n",
    "[[checks]]\n",
    "[checks.probe]\n",
    "kind = \"sql\"\n",
    "target = \"db\"\n",
    "query = '''\nSELECT 1\n'''\n",
    "[[checks.expect]]\n",
    "path = \"scalar\"\n",
    "warn_if = \"> 0\"\n",
    "informational = true\n",
    "[[actions]]\n",
    "[[recovery]]\n",
    "trend = \"below\"\n",
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "#",
    "\n",
    "\r\n",
    "\r",
    "\t",
    " ",
    "\\",
    "\\u",
    "{",
    "}",
    ",",
    ".",
    "\u{0}",
    "\u{feff}",
    "通知",
    "🔥",
    "\u{301}",
    "{{",
    "}}",
    "{%",
    "$1",
    ";",
];
