//! The pure core: no `redis_module` imports, fully unit-tested.

pub mod batch;
pub mod docs;
pub mod entry;
pub mod glob;
pub mod history;
pub mod index;
pub mod lazy;
pub mod lease;
pub mod limits;
pub mod metrics;
pub mod name;
pub mod parse;
pub mod reply;
pub mod rules;
pub mod wire;

/// Renders bytes the way redis-cli does: printable ASCII as is, the rest as `\xNN`, quoted.
pub fn show(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &c in bytes {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('"');
    s
}
