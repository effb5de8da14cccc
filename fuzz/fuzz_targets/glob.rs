//! The glob matcher: any pattern against any subject (input: pattern NUL subject). Oracles:
//! no panic, and the properties the index relies on: a match starts with the pattern's literal
//! prefix; a literal pattern matches exactly its prefix; `*` + pattern matches whenever the
//! pattern does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tagcache_fuzz::core::glob::Glob;

fuzz_target!(|data: &[u8]| {
    let (pattern, subject) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let g = Glob::new(pattern);
    let m = g.matches(subject);
    if m {
        assert!(subject.starts_with(g.literal_prefix()));
    }
    if g.is_literal() {
        assert_eq!(m, subject == g.literal_prefix());
    }
    let mut star = b"*".to_vec();
    star.extend_from_slice(pattern);
    if m {
        assert!(Glob::new(&star).matches(subject));
    }
});
