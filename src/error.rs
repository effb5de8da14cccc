//! The one error type of the module, worded as core Redis words its errors.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheError {
    WrongArity(&'static str),
    Syntax,
    NotInteger,
    InvalidExpire(&'static str),
    WrongType,
    NoSuchKey,
    MetaNotJson(String),
    MetaNotObject,
    NegativeDepth,
    NotPositive,
    UnknownSelector(String),
    UnknownStrategy(String),
    /// A CACHE.RULE strategy (rules have no SOFT).
    UnknownRuleStrategy(String),
    UnknownSubcommand(String, &'static str),
    TooLarge,
    /// A cluster-wide command where the client cannot wait (MULTI, a script, a module's call).
    CannotWait(&'static str),
    /// A full error text made by the core (it starts with the error code).
    Message(String),
    /// What the rules engine (CACHE.RULE, CACHE.RELATE, CACHE.WRITE) refuses.
    Rule(Box<crate::core::rules::RuleError>),
    Internal(String),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::WrongArity(cmd) => {
                write!(f, "ERR wrong number of arguments for '{cmd}' command")
            }
            CacheError::Syntax => write!(f, "ERR syntax error"),
            CacheError::NotInteger => write!(f, "ERR value is not an integer or out of range"),
            CacheError::InvalidExpire(cmd) => write!(f, "ERR invalid expire time in '{cmd}' command"),
            CacheError::WrongType => write!(
                f,
                "WRONGTYPE Operation against a key holding the wrong kind of value"
            ),
            CacheError::NoSuchKey => write!(f, "ERR no such key"),
            CacheError::MetaNotJson(why) => write!(f, "ERR META is not valid JSON: {why}"),
            CacheError::MetaNotObject => write!(f, "ERR META must be a JSON object"),
            CacheError::NegativeDepth => write!(f, "ERR DEPTH can't be negative"),
            CacheError::NotPositive => write!(f, "ERR value is out of range, must be positive"),
            CacheError::UnknownSelector(s) => write!(
                f,
                "ERR unknown selector '{s}', expected KEY, TAG, PATTERN, NAMESPACE, ALL or DEPENDENTS"
            ),
            CacheError::UnknownStrategy(s) => write!(
                f,
                "ERR unknown strategy '{s}', expected IMMEDIATE, LAZY, BATCHED or SOFT"
            ),
            CacheError::UnknownRuleStrategy(s) => write!(
                f,
                "ERR unknown strategy '{s}', expected IMMEDIATE, LAZY or BATCHED"
            ),
            CacheError::UnknownSubcommand(s, cmd) => write!(
                f,
                "ERR unknown subcommand '{s}'. Try {cmd} HELP."
            ),
            CacheError::TooLarge => write!(f, "ERR cache entry too large"),
            CacheError::CannotWait(cmd) => write!(
                f,
                "ERR '{cmd}' reaches every master and cannot wait for them inside MULTI, a script or a module's call: send it alone, or add LOCAL as first argument for this node only"
            ),
            CacheError::Message(text) => write!(f, "{text}"),
            CacheError::Rule(e) => write!(f, "{e}"),
            CacheError::Internal(why) => write!(f, "ERR tagcache internal error: {why}"),
        }
    }
}

impl std::error::Error for CacheError {}

pub type Result<T> = std::result::Result<T, CacheError>;

/// Runs `f`; a panic (which must never cross into the server) comes back as its message.
pub fn catch<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_returns_the_value_or_the_panic_message() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(
            catch(|| -> u8 { panic!("plain") }),
            Err("plain".to_string())
        );
        let n = 3;
        assert_eq!(
            catch(|| -> u8 { panic!("formatted {n}") }),
            Err("formatted 3".to_string())
        );
        assert_eq!(
            catch(|| -> u8 { std::panic::panic_any(42u32) }),
            Err("panic".to_string())
        );
    }
}
