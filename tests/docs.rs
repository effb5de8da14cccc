//! Command docs: `COMMAND DOCS` gives every CACHE.* command and subcommand its summary, since,
//! complexity and arguments, and the syntax written from them is the README's list under
//! "Syntax at a glance" (so the registry, the server's docs and the README cannot drift).

mod common;

use common::*;
use redis::Value;

fn s(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(t) => t.clone(),
        Value::Int(n) => n.to_string(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn get<'a>(m: &'a [(String, Value)], k: &str) -> Option<&'a Value> {
    m.iter().find(|(n, _)| n == k).map(|(_, v)| v)
}

/// One argument of COMMAND DOCS as redis-cli writes its hint (the rules of `core::docs::render`).
fn render(arg: &Value) -> String {
    let m = map(arg);
    let name = s(get(&m, "name").expect("name"));
    let kind = s(get(&m, "type").expect("type"));
    let token = get(&m, "token").map(s);
    let flags: Vec<String> =
        get(&m, "flags").map_or(Vec::new(), |f| list(f).iter().map(s).collect());
    let sub: Vec<String> =
        get(&m, "arguments").map_or(Vec::new(), |a| list(a).iter().map(render).collect());
    let body = match kind.as_str() {
        "pure-token" => String::new(),
        "oneof" => sub.join(" | "),
        "block" => sub.join(" "),
        _ => name.clone(),
    };
    let mut one = match (&token, body.is_empty()) {
        (Some(t), true) => t.clone(),
        (Some(t), false) => format!("{t} {body}"),
        (None, _) => body,
    };
    if flags.iter().any(|f| f == "multiple") {
        let again = if kind == "oneof" || kind == "block" {
            one.clone()
        } else {
            name
        };
        one = format!("{one} [{again} ...]");
    }
    if flags.iter().any(|f| f == "optional") {
        one = format!("[{one}]");
    }
    one
}

/// (name, syntax) of a command's docs and of its subcommands'.
fn lines(name: &str, doc: &Value, out: &mut Vec<(String, String)>) {
    let m = map(doc);
    for field in ["summary", "since", "complexity"] {
        let v = s(get(&m, field).unwrap_or_else(|| panic!("{name} has no {field}")));
        assert!(!v.is_empty(), "{name}: empty {field}");
    }
    assert_eq!(s(get(&m, "module").expect("module")), "cache", "{name}");
    let mut line = name.replace('|', " ").to_uppercase();
    if let Some(args) = get(&m, "arguments") {
        for a in list(args) {
            line.push(' ');
            line.push_str(&render(&a));
        }
    }
    out.push((name.to_owned(), line));
    if let Some(subs) = get(&m, "subcommands") {
        for (sub, d) in map(subs) {
            lines(&sub, &d, out);
        }
    }
}

/// The README's "Syntax at a glance" block, line by line.
fn readme_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("### Syntax at a glance")
        .expect("the README's syntax list");
    let block = &readme[start..];
    let open = block.find("```\n").expect("its code block") + 4;
    let close = open + block[open..].find("```").expect("its end");
    block[open..close].lines().map(str::to_owned).collect()
}

#[test]
fn command_docs_cover_every_command_and_match_the_readme() {
    let s = Server::start();
    let mut c = s.conn();
    let names: Vec<String> = list(&ok(
        &mut c,
        &["COMMAND", "LIST", "FILTERBY", "MODULE", "cache"],
    ))
    .iter()
    .map(text)
    .collect();
    assert!(names.len() >= 21, "{names:?}");
    let mut got = Vec::new();
    for name in &names {
        let docs = map(&ok(&mut c, &["COMMAND", "DOCS", name]));
        assert_eq!(docs.len(), 1, "{name}");
        lines(&docs[0].0, &docs[0].1, &mut got);
    }
    // The subcommands are listed by name too, and under their container.
    got.sort();
    got.dedup();
    let mut want = readme_lines();
    want.sort();
    let got: Vec<String> = got.into_iter().map(|(_, l)| l).collect();
    assert_eq!(
        got,
        want,
        "COMMAND DOCS (left) against the README (right):\n{}",
        got.join("\n")
    );
    // The key specs are still those of the keyed commands: CACHE.GET's key is read-only.
    let info = list(&ok(&mut c, &["COMMAND", "INFO", "cache.get"]));
    let specs = format!("{:?}", list(&info[0]));
    assert!(specs.contains("RO") && specs.contains("access"), "{specs}");
}
