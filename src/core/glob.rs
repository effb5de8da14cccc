//! Redis-compatible glob matching (the syntax of `KEYS`, `SCAN ... MATCH` and
//! `PSUBSCRIBE`), over byte slices, without exponential backtracking.
//!
//! The semantics follow Redis's `stringmatchlen()` (`src/util.c`, case
//! sensitive mode) byte for byte:
//!
//! * `*` matches any sequence of bytes, including the empty one; runs of
//!   consecutive stars collapse into one.
//! * `?` matches exactly one byte.
//! * `[...]` matches one byte from a class; `[^...]` negates it. Inside a
//!   class `x-y` is an inclusive range (a reversed range `z-a` means `a-z`)
//!   and `\x` is a literal `x`. A `]` directly after `[` (or `[^`) closes an
//!   empty class, so `[]` never matches and `[^]` matches any byte. A class
//!   that is not closed before the end of the pattern is closed by the end of
//!   the pattern. The range check comes before the closing-bracket check, so
//!   in `[a-]` the `]` is the end of the range `a-]` and the class is
//!   unterminated.
//! * `\x` outside a class matches a literal `x`; a lone trailing `\` matches a
//!   literal backslash (inside a class as well).
//! * Every other byte matches itself.
//! * One deliberate difference: an empty subject matches a pattern made only
//!   of stars. Redis's `stringmatchlen("*", "")` is false (its main loop never
//!   runs on an empty subject), but `KEYS *` special-cases the lone `*` and
//!   lists the empty key; here the matcher itself gets that right.
//!
//! Range bounds are compared as unsigned bytes (as Redis does where `char` is
//! unsigned, e.g. on ARM). On x86 Redis compares them as signed `char`, which
//! only makes a difference for ranges with one bound below `0x80` and the
//! other at or above it.
//!
//! A pattern is compiled once into tokens; every token except `*` consumes
//! exactly one byte, so the matcher only needs to remember the most recent
//! star (a single backtrack point), giving O(tokens × subject) worst case.

/// A set of bytes, one bit per byte value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    const EMPTY: ByteSet = ByteSet([0; 4]);

    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1u64 << (b & 63);
    }

    fn insert_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.insert(b);
        }
    }

    fn negate(&mut self) {
        for word in &mut self.0 {
            *word = !*word;
        }
    }

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1u64 << (b & 63)) != 0
    }
}

/// One compiled element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Matches exactly this byte.
    Literal(u8),
    /// `?`: matches any single byte.
    Any,
    /// `[...]`: matches one byte of the set (negation already applied).
    Class(ByteSet),
    /// `*` (a run of stars collapsed into one).
    Star,
}

impl Token {
    /// Whether this single-byte token accepts `b` (`Star` never does: it is
    /// handled by the matcher itself).
    fn accepts(&self, b: u8) -> bool {
        match self {
            Token::Literal(l) => *l == b,
            Token::Any => true,
            Token::Class(set) => set.contains(b),
            Token::Star => false,
        }
    }
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    /// The leading `Literal` tokens, as bytes.
    prefix: Vec<u8>,
}

impl Glob {
    /// Compiles `pattern`. Never fails and never panics: every byte string is
    /// a valid pattern under Redis's rules.
    pub fn new(pattern: &[u8]) -> Glob {
        let tokens = compile(pattern);
        let prefix = tokens
            .iter()
            .map_while(|t| match t {
                Token::Literal(b) => Some(*b),
                _ => None,
            })
            .collect();
        Glob { tokens, prefix }
    }

    /// Whether `subject` matches the whole pattern.
    ///
    /// Worst case O(tokens × subject length), no recursion.
    pub fn matches(&self, subject: &[u8]) -> bool {
        let tokens = &self.tokens;
        if subject.is_empty() {
            // Only stars match nothing (see the module doc).
            return tokens.iter().all(|t| matches!(t, Token::Star));
        }
        let n = subject.len();
        let (mut t, mut s) = (0usize, 0usize);
        // Token index just after the last star seen, and the subject position
        // that star's match currently ends at.
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            if let Some(tok) = tokens.get(t) {
                if *tok == Token::Star {
                    backtrack = Some((t + 1, s));
                    t += 1;
                    continue;
                }
                if s < n && tok.accepts(subject[s]) {
                    t += 1;
                    s += 1;
                    continue;
                }
            } else if s == n {
                return true;
            }
            // Mismatch: let the last star swallow one more byte, if any left.
            match backtrack {
                Some((after_star, star_end)) if star_end < n => {
                    backtrack = Some((after_star, star_end + 1));
                    t = after_star;
                    s = star_end + 1;
                }
                _ => return false,
            }
        }
    }

    /// The literal bytes every match must start with (the pattern up to its
    /// first `*`, `?` or `[`, with `\` escapes resolved). Empty when the
    /// pattern starts with a wildcard.
    pub fn literal_prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// True when the pattern has no wildcard at all (it matches exactly one
    /// string, `literal_prefix()`).
    pub fn is_literal(&self) -> bool {
        self.prefix.len() == self.tokens.len()
    }
}

/// Convenience: `Glob::new(pattern).matches(subject)`.
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    Glob::new(pattern).matches(subject)
}

/// Splits a pattern into tokens exactly the way Redis's `stringmatchlen`
/// walks it.
fn compile(p: &[u8]) -> Vec<Token> {
    let n = p.len();
    let mut tokens = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        match p[i] {
            b'*' => {
                while i < n && p[i] == b'*' {
                    i += 1;
                }
                tokens.push(Token::Star);
            }
            b'?' => {
                tokens.push(Token::Any);
                i += 1;
            }
            b'[' => {
                let (set, next) = compile_class(p, i + 1);
                tokens.push(Token::Class(set));
                i = next;
            }
            b'\\' if n - i >= 2 => {
                tokens.push(Token::Literal(p[i + 1]));
                i += 2;
            }
            // Includes a lone trailing backslash, which is a literal `\`.
            b => {
                tokens.push(Token::Literal(b));
                i += 1;
            }
        }
    }
    tokens
}

/// Parses a class body starting at `j` (just after the `[`). Returns the set
/// of accepted bytes and the index just after the class.
fn compile_class(p: &[u8], mut j: usize) -> (ByteSet, usize) {
    let n = p.len();
    let negate = j < n && p[j] == b'^';
    if negate {
        j += 1;
    }
    let mut set = ByteSet::EMPTY;
    // The order of these checks is Redis's: escape, `]`, end of pattern,
    // range, plain byte.
    loop {
        if j + 1 < n && p[j] == b'\\' {
            set.insert(p[j + 1]);
            j += 2;
        } else if j < n && p[j] == b']' {
            j += 1;
            break;
        } else if j >= n {
            // Unterminated class: the end of the pattern closes it.
            break;
        } else if j + 2 < n && p[j + 1] == b'-' {
            let (a, b) = (p[j], p[j + 2]);
            set.insert_range(a.min(b), a.max(b));
            j += 3;
        } else {
            set.insert(p[j]);
            j += 1;
        }
    }
    if negate {
        set.negate();
    }
    (set, j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Straightforward port of Redis's `stringmatchlen_impl` (case-sensitive
    /// mode). Reads past the end of the pattern see a NUL byte, as they do on
    /// Redis's NUL-terminated sds strings. Bytes are compared unsigned.
    fn redis_ref(pattern: &[u8], subject: &[u8]) -> bool {
        if subject.is_empty() {
            // Our one deliberate difference (module doc): stars match the empty subject.
            return pattern.iter().all(|&c| c == b'*');
        }
        let mut skip_longer = false;
        redis_ref_impl(pattern, subject, &mut skip_longer, 0)
    }

    fn redis_ref_impl(pat: &[u8], s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
        if nesting > 1000 {
            return false;
        }
        let at = |k: usize| -> u8 { pat.get(k).copied().unwrap_or(0) };
        let mut p = 0usize; // pattern index; pattern_len == pat.len() - p
        let mut si = 0usize; // subject index; string_len == s.len() - si
        let plen = |p: usize| pat.len() - p;
        while plen(p) > 0 && si < s.len() {
            match pat[p] {
                b'*' => {
                    while plen(p) > 0 && at(p + 1) == b'*' {
                        p += 1;
                    }
                    if plen(p) == 1 {
                        return true;
                    }
                    while si < s.len() {
                        if redis_ref_impl(&pat[p + 1..], &s[si..], skip_longer, nesting + 1) {
                            return true;
                        }
                        if *skip_longer {
                            return false;
                        }
                        si += 1;
                    }
                    *skip_longer = true;
                    return false;
                }
                b'?' => {
                    si += 1;
                }
                b'[' => {
                    p += 1;
                    let not = at(p) == b'^';
                    if not {
                        p += 1;
                    }
                    let mut matched = false;
                    loop {
                        if at(p) == b'\\' && plen(p) >= 2 {
                            p += 1;
                            if pat[p] == s[si] {
                                matched = true;
                            }
                        } else if at(p) == b']' {
                            break;
                        } else if plen(p) == 0 {
                            p -= 1;
                            break;
                        } else if plen(p) >= 3 && pat[p + 1] == b'-' {
                            let mut start = pat[p];
                            let mut end = pat[p + 2];
                            let c = s[si];
                            if start > end {
                                std::mem::swap(&mut start, &mut end);
                            }
                            p += 2;
                            if c >= start && c <= end {
                                matched = true;
                            }
                        } else if pat[p] == s[si] {
                            matched = true;
                        }
                        p += 1;
                    }
                    if not {
                        matched = !matched;
                    }
                    if !matched {
                        return false;
                    }
                    si += 1;
                }
                c => {
                    let mut lit = c;
                    if c == b'\\' && plen(p) >= 2 {
                        p += 1;
                        lit = pat[p];
                    }
                    if lit != s[si] {
                        return false;
                    }
                    si += 1;
                }
            }
            p += 1;
            if si == s.len() {
                while at(p) == b'*' {
                    p += 1;
                }
                break;
            }
        }
        plen(p) == 0 && si == s.len()
    }

    fn m(p: &str, s: &str) -> bool {
        let got = glob_match(p.as_bytes(), s.as_bytes());
        assert_eq!(
            got,
            redis_ref(p.as_bytes(), s.as_bytes()),
            "glob and reference disagree on pattern {p:?} subject {s:?}"
        );
        got
    }

    #[test]
    fn literals() {
        assert!(m("hello", "hello"));
        assert!(!m("hello", "hell"));
        assert!(!m("hello", "helloo"));
        assert!(!m("hello", "Hello"), "case sensitive");
        assert!(m("get_track", "get_track"));
        assert!(!m("get_track", "get_all_tracks"));
        assert!(!m("get_all_tracks", "get_track"));
    }

    #[test]
    fn stars() {
        assert!(m("user:*", "user:1"));
        assert!(m("user:*", "user:"));
        assert!(!m("user:*", "user"));
        assert!(!m("user:*", "users:1"));
        assert!(m("*", "anything"));
        assert!(m("*", "x"));
        assert!(m("a*b", "ab"));
        assert!(m("a*b", "aXYZb"));
        assert!(!m("a*b", "aXYZbc"));
        assert!(m("*b", "b"));
        assert!(m("a**b", "ab"));
        assert!(m("a***", "a"));
        assert!(m("***", "abc"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*", "xxcxxbxxaxx"));
        assert!(m("*ab", "aab"));
        assert!(m("*aab", "aaab"));
        assert!(m("a*ab", "aab"));
        assert!(!m("a*ab", "ab"));
        assert!(m("*get_*", "api:get_track:1"));
    }

    #[test]
    fn question_mark() {
        assert!(m("?", "a"));
        assert!(!m("?", "ab"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("??", "xy"));
        assert!(m("?*", "x"));
        assert!(m("*?", "xyz"));
        assert!(!m("??*", "x"));
    }

    #[test]
    fn classes() {
        assert!(m("[abc]", "a"));
        assert!(m("[abc]", "c"));
        assert!(!m("[abc]", "d"));
        assert!(!m("[abc]", "ab"));
        assert!(m("h[ae]llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        // Negation.
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("[^abc]", "d"));
        assert!(!m("[^abc]", "b"));
        // `^` not in first position is literal.
        assert!(m("[a^]", "^"));
        // `]` right after `[` closes an empty class: never matches.
        assert!(!m("[]", "]"));
        assert!(!m("[]", "a"));
    }

    #[test]
    fn empty_class_quirks() {
        // `[]a]` = empty class, then literal `a`, then literal `]`: needs 3
        // bytes and the first can never match.
        let g = Glob::new(b"[]a]");
        assert!(!g.matches(b"]"));
        assert!(!g.matches(b"a"));
        assert!(!g.matches(b"xa]"));
        // `[^]` negates the empty class: any single byte.
        assert!(m("[^]", "x"));
        assert!(m("[^]", "]"));
        assert!(!m("[^]", "xy"));
        assert!(m("[^]a]", "xa]"));
    }

    #[test]
    fn ranges() {
        assert!(m("[a-z]", "a"));
        assert!(m("[a-z]", "m"));
        assert!(m("[a-z]", "z"));
        assert!(!m("[a-z]", "A"));
        assert!(!m("[a-z]", "-"));
        assert!(m("[0-9a-f]", "7"));
        assert!(m("[0-9a-f]", "e"));
        assert!(!m("[0-9a-f]", "g"));
        // Reversed range behaves like the normal one.
        assert!(m("[z-a]", "a"));
        assert!(m("[z-a]", "q"));
        assert!(m("[z-a]", "z"));
        assert!(!m("[z-a]", "-"));
        // Negated range.
        assert!(!m("[^a-z]", "q"));
        assert!(m("[^a-z]", "Q"));
        // `-` at the start / end of a class is literal.
        assert!(m("[-a]", "-"));
        // ... but `b-]` in `[ab-]x` is a range, which swallows the `]`: the
        // whole rest of the pattern is one unterminated class `a`, `]`..`b`, `x`.
        assert!(m("[ab-]x", "x"));
        assert!(m("[ab-]x", "_"));
        assert!(!m("[ab-]x", "-"));
        assert!(!m("[ab-]x", "-x"));
        // `a-]` is a range ending at `]` (0x5d), swapped to `]`..`a`, so the
        // class `[a-]]` holds `]^_\`a` and is closed by the second `]`.
        assert!(m("[a-]]", "_"));
        assert!(m("[a-]]", "]"));
        assert!(!m("[a-]]", "b"));
        // Range bound may be an escape char: `a-\` is the range `\`..`a`.
        assert!(m("[a-\\]", "^"));
    }

    #[test]
    fn escapes() {
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("\\?", "?"));
        assert!(!m("\\?", "a"));
        assert!(m("\\[a]", "[a]"));
        assert!(m("\\a", "a"));
        assert!(m("\\\\", "\\"));
        assert!(m("a\\*b*", "a*bcd"));
        // Inside a class.
        assert!(m("[\\]]", "]"));
        assert!(m("[\\]a]", "a"));
        assert!(!m("[\\]a]", "b"));
        assert!(m("[\\-]", "-"));
        assert!(m("[a\\-z]", "-"));
        assert!(!m("[a\\-z]", "m"));
        assert!(m("[\\^]", "^"));
        assert!(m("[^\\]]", "a"));
        assert!(!m("[^\\]]", "]"));
    }

    #[test]
    fn trailing_backslash() {
        // A lone trailing backslash is a literal backslash.
        assert!(m("\\", "\\"));
        assert!(!m("\\", "a"));
        assert!(m("ab\\", "ab\\"));
        assert!(!m("ab\\", "ab"));
        assert!(m("*\\", "xyz\\"));
        // Same inside an unterminated class.
        assert!(m("[\\", "\\"));
        assert!(m("[a\\", "\\"));
        assert!(m("[a\\", "a"));
        assert!(!m("[a\\", "b"));
    }

    #[test]
    fn unterminated_class() {
        // The end of the pattern closes the class.
        assert!(m("[abc", "a"));
        assert!(m("[abc", "c"));
        assert!(!m("[abc", "d"));
        assert!(!m("[abc", "ab"));
        assert!(m("x[a-c", "xb"));
        // `[` alone is an empty class: never matches.
        assert!(!m("[", "["));
        assert!(!m("[", "a"));
        assert!(!m("a[", "a"));
        // `[^` alone matches any single byte.
        assert!(m("[^", "x"));
        assert!(m("[^", "^"));
        assert!(!m("[^", "xy"));
        // `[a-` has too few bytes for a range: literals `a` and `-`.
        assert!(m("[a-", "a"));
        assert!(m("[a-", "-"));
        assert!(!m("[a-", "b"));
        // `[a-]`: `]` is consumed as the end of range `]`..`a`, so the class
        // is unterminated and holds exactly the bytes `]^_\`a`.
        assert!(m("[a-]", "]"));
        assert!(m("[a-]", "_"));
        assert!(m("[a-]", "`"));
        assert!(!m("[a-]", "\\"));
        assert!(!m("[a-]", "-"));
        assert!(!m("[a-]", "b"));
        assert!(!m("[a-]", "a]"));
        // A star after an unterminated class is part of the class.
        assert!(m("[ab*", "*"));
        assert!(!m("[ab*", "abc"));
    }

    #[test]
    fn empty_pattern_and_subject() {
        assert!(m("", ""));
        assert!(!m("", "a"));
        // Stars match the empty subject (as `KEYS *` lists the empty key).
        assert!(m("*", ""));
        assert!(m("**", ""));
        assert!(!m("?", ""));
        assert!(!m("a", ""));
        assert!(!m("[^]", ""));
    }

    #[test]
    fn non_ascii_bytes() {
        let g = Glob::new(b"\x00*\xff");
        assert!(g.matches(b"\x00\xff"));
        assert!(g.matches(b"\x00abc\xff"));
        assert!(!g.matches(b"\x00abc\xfe"));
        assert!(glob_match(b"?", b"\xff"));
        assert!(glob_match(b"?", b"\x00"));
        assert!(glob_match(b"[\x00]", b"\x00"));
        assert!(!glob_match(b"[\x00]", b"0"));
        assert!(glob_match(b"[\x80-\xff]", b"\xff"));
        assert!(glob_match(b"[\x80-\xff]", b"\x80"));
        assert!(!glob_match(b"[\x80-\xff]", b"\x7f"));
        assert!(glob_match(b"[\xff-\x00]", b"\x42")); // reversed: whole range
        assert!(glob_match(b"[^\x00]", b"\xff"));
        assert!(!glob_match(b"[^\x00]", b"\x00"));
        assert!(glob_match(b"\\\xff", b"\xff"));
        assert!(glob_match(b"a\x00b", b"a\x00b"));
        assert!(!glob_match(b"a\x00b", b"a"));
        assert_eq!(Glob::new(b"\xff\x00*").literal_prefix(), b"\xff\x00");
        for (p, s) in [
            (&b"\x00*\xff"[..], &b"\x00\xfe\xff"[..]),
            (b"[\x80-\xff]", b"\xc3"),
            (b"[\xff-\x80]", b"\x90"),
            (b"*\xff?", b"\xff\xff\xff"),
        ] {
            assert_eq!(glob_match(p, s), redis_ref(p, s));
        }
    }

    #[test]
    fn literal_prefix_and_is_literal() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"", b"", true),
            (b"user:*", b"user:", false),
            (b"user:1", b"user:1", true),
            (b"get_track", b"get_track", true),
            (b"*foo", b"", false),
            (b"?foo", b"", false),
            (b"[ab]foo", b"", false),
            (b"foo?bar", b"foo", false),
            (b"foo[0-9]", b"foo", false),
            (b"a\\*b*", b"a*b", false),
            (b"a\\*b", b"a*b", true),
            (b"a\\?\\[x", b"a?[x", true),
            (b"\\\\x", b"\\x", true),
            (b"ab\\", b"ab\\", true),
            (b"\\", b"\\", true),
            (b"a]b", b"a]b", true),
            (b"a^-b", b"a^-b", true),
        ];
        for &(p, prefix, literal) in cases {
            let g = Glob::new(p);
            assert_eq!(
                g.literal_prefix(),
                prefix,
                "prefix of {:?}",
                p.escape_ascii().to_string()
            );
            assert_eq!(
                g.is_literal(),
                literal,
                "is_literal of {:?}",
                p.escape_ascii().to_string()
            );
            if literal {
                assert!(g.matches(prefix));
            }
        }
    }

    #[test]
    fn compiled_glob_is_reusable_and_comparable() {
        let g = Glob::new(b"tag:*:v[0-9]");
        assert!(g.matches(b"tag:x:v1"));
        assert!(g.matches(b"tag::v9"));
        assert!(!g.matches(b"tag:x:va"));
        assert_eq!(g, g.clone());
        assert_eq!(Glob::new(b"a**b"), Glob::new(b"a*b"));
        assert_ne!(Glob::new(b"a*b"), Glob::new(b"a?b"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let subject = vec![b'a'; 10_000];
        let g = Glob::new(b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*b");
        assert!(!g.matches(&subject));
        let mut with_b = subject.clone();
        with_b.push(b'b');
        assert!(g.matches(&with_b));
        let many = b"a*".repeat(2_000);
        assert!(Glob::new(&many).matches(&subject));
    }

    /// Every pattern of length <= 3 over the pattern alphabet against every
    /// subject of length <= 4 over the subject alphabet.
    #[test]
    fn exhaustive_small_against_reference() {
        fn all(alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
            let mut out = vec![Vec::new()];
            let mut layer = vec![Vec::new()];
            for _ in 0..max_len {
                let mut next = Vec::new();
                for w in &layer {
                    for &c in alphabet {
                        let mut w2 = w.clone();
                        w2.push(c);
                        next.push(w2);
                    }
                }
                out.extend(next.iter().cloned());
                layer = next;
            }
            out
        }
        let patterns = all(b"ab*?[]^-\\", 3);
        let subjects = all(b"ab-]^\\", 4);
        for p in &patterns {
            let g = Glob::new(p);
            for s in &subjects {
                assert_eq!(
                    g.matches(s),
                    redis_ref(p, s),
                    "pattern {:?} subject {:?}",
                    p.escape_ascii().to_string(),
                    s.escape_ascii().to_string()
                );
            }
        }
    }

    fn pattern_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"ab*?[]^-\\".to_vec()), 0..=8)
    }

    fn subject_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"ab-]^\\".to_vec()), 0..=8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn matches_like_redis(pattern in pattern_strategy(), subject in subject_strategy()) {
            prop_assert_eq!(
                Glob::new(&pattern).matches(&subject),
                redis_ref(&pattern, &subject),
                "pattern {:?} subject {:?}",
                pattern.escape_ascii().to_string(),
                subject.escape_ascii().to_string()
            );
        }

        #[test]
        fn matches_start_with_literal_prefix(
            pattern in pattern_strategy(),
            subject in subject_strategy(),
        ) {
            let g = Glob::new(&pattern);
            let mut prefixed = g.literal_prefix().to_vec();
            prefixed.extend_from_slice(&subject);
            for s in [&subject, &prefixed] {
                if g.matches(s) {
                    prop_assert!(s.starts_with(g.literal_prefix()));
                }
                if g.is_literal() {
                    prop_assert_eq!(g.matches(s), s.as_slice() == g.literal_prefix());
                }
            }
        }
    }
}
