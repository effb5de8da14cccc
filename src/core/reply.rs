//! The reply of a command, as a value: handlers return it, the shell writes it, cluster
//! masters exchange and combine it.

use super::metrics::Field;

/// A reply, written with the server's own reply calls (`server::reply`) so maps are RESP3 maps
/// (flat arrays under RESP2) and order is kept; also what masters send each other.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok,
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    Double(f64),
    Array(Vec<Reply>),
    Map(Vec<(String, Reply)>),
    /// The handler already replied.
    Sent,
}

impl Reply {
    /// A map with fixed field names.
    pub fn fields(pairs: Vec<(&'static str, Reply)>) -> Reply {
        Reply::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

impl From<Field> for Reply {
    fn from(f: Field) -> Reply {
        match f {
            Field::Nil => Reply::Nil,
            Field::Int(n) => Reply::Int(n),
            Field::Float(x) => Reply::Double(x),
            Field::Str(s) => Reply::Bulk(s.into_bytes()),
            Field::Map(pairs) => {
                Reply::Map(pairs.into_iter().map(|(k, v)| (k, v.into())).collect())
            }
            Field::List(items) => Reply::Array(items.into_iter().map(Reply::from).collect()),
        }
    }
}
