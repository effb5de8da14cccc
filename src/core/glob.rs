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
//! # Cost: linear in the key
//!
//! A pattern is compiled once into tokens, and every token except `*` consumes exactly one
//! byte. The tokens are then cut at the stars into a *head* (before the first star), a *tail*
//! (after the last) and the *middle segments* between stars. A subject matches when its first
//! `|head|` bytes match the head, its last `|tail|` bytes the tail (the two not overlapping),
//! and the middle segments can be placed, in order and without overlap, in what lies between.
//! The middle segments are placed **greedily, each at its leftmost possible position** after
//! the previous one. That is exact:
//!
//! *Claim.* If some placement `q1 < q2 < … < qk` of the segments `M1 … Mk` exists (each `Mi`
//! matches the `|Mi|` bytes at `qi`, `q(i+1) >= qi + |Mi|`, `qk + |Mk| <=` the tail's start),
//! the greedy one `p1 … pk` exists too and `pi <= qi` for every `i`.
//!
//! *Proof*, by induction on `i`. Whether `Mi` matches at a position depends on that position
//! alone (every token is one byte wide, so a segment is a fixed-length window: nothing inside
//! it can stretch). `p1` is the leftmost position `>= |head|` where `M1` matches; `q1` is such a
//! position, so `p1` exists and `p1 <= q1`. If `pi <= qi`, then `q(i+1) >= qi + |Mi| >= pi +
//! |Mi|` is a position where `M(i+1)` matches at or after the greedy search's start, so the
//! leftmost one, `p(i+1)`, exists and `p(i+1) <= q(i+1)`. Finally `pk + |Mk| <= qk + |Mk|`,
//! which fits before the tail. The converse is trivial (the greedy placement is a placement),
//! so the subject matches iff the greedy placement succeeds; the property tests below check
//! this against a port of Redis's recursive matcher.
//!
//! Each search starts where the previous segment ended and stops at its first match, so the
//! searched ranges do not overlap: all middle segments together look at each byte of the
//! subject at most once. Per byte, a segment of literals costs O(1) amortised (Knuth-Morris-
//! Pratt); one with `?` or classes inside costs one step per 64 of its tokens (bit-parallel
//! Shift-And, its state unrolled on the stack up to four words; the limits allow 128 positions,
//! two words; wider ones, from the master or the AOF, only over the words holding a live partial
//! match); a `?` next to a star costs
//! nothing (`*?` is `?*`: leading and trailing `?` of a segment are a minimum length, not
//! searched for). The head and tail cost their length. So matching a key of `n` bytes costs at
//! most `n × ⌈m/64⌉ + |pattern|` steps for the longest middle segment `m` (at most 64 steps per
//! byte under the default 4096-byte pattern limit; one for the usual patterns), with no
//! backtracking, instead of the `n × |pattern|` of a single-backtrack matcher, and a key shorter
//! than the pattern's minimum length is refused at once. [`Glob::cost`] gives that bound, for
//! callers that budget a scan.

use smallvec::SmallVec;

/// A set of bytes, one bit per byte value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    const EMPTY: ByteSet = ByteSet([0; 4]);
    const FULL: ByteSet = ByteSet([u64::MAX; 4]);

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

    fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

/// One compiled element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Matches exactly this byte.
    Literal(u8),
    /// `?` (or a class that holds every byte): matches any single byte.
    Any,
    /// `[...]`: matches one byte of the set (negation already applied; never empty of one
    /// byte or full, see [`simplify`]).
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

/// A class of one byte is that literal; a class of every byte is `?`.
fn simplify(t: Token) -> Token {
    match t {
        Token::Class(set) if set == ByteSet::FULL => Token::Any,
        Token::Class(set) if set.len() == 1 => {
            let b = (0..=255u8).find(|&b| set.contains(b)).unwrap_or_default();
            Token::Literal(b)
        }
        t => t,
    }
}

/// A middle segment: the tokens between two stars.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    /// Leading `?`s: bytes to skip before the body.
    skip: usize,
    body: Body,
    /// Trailing `?`s: bytes to skip after the body.
    after: usize,
}

impl Segment {
    fn len(&self) -> usize {
        self.skip + self.body.len() + self.after
    }

    /// The end of the leftmost placement of the segment in `s[from..limit]`.
    fn place(&self, s: &[u8], from: usize, limit: usize) -> Option<usize> {
        let from = from.checked_add(self.skip)?;
        let limit = limit.checked_sub(self.after)?;
        let start = self.body.find(s, from, limit)?;
        Some(start + self.body.len() + self.after)
    }

    #[cfg(test)]
    fn steps_per_byte(&self) -> usize {
        match &self.body {
            Body::Bits(b) => b.words,
            _ => 1,
        }
    }
}

/// What a segment searches for, between its leading and trailing `?`s.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// Nothing: the segment was only `?`s.
    Empty,
    /// Literals only: Knuth-Morris-Pratt.
    Literal { needle: Vec<u8>, fail: Vec<usize> },
    /// Anything else (starts and ends with a literal or class): Shift-And.
    Bits(Box<ShiftAnd>),
}

impl Body {
    fn new(tokens: &[Token]) -> Body {
        if tokens.is_empty() {
            return Body::Empty;
        }
        let literal: Option<Vec<u8>> = tokens
            .iter()
            .map(|t| match t {
                Token::Literal(b) => Some(*b),
                _ => None,
            })
            .collect();
        match literal {
            Some(needle) => {
                let fail = failure(&needle);
                Body::Literal { needle, fail }
            }
            None => Body::Bits(Box::new(ShiftAnd::new(tokens))),
        }
    }

    fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::Literal { needle, .. } => needle.len(),
            Body::Bits(b) => b.len,
        }
    }

    /// The leftmost `p >= from` with the body matching `s[p..p + len]` and `p + len <= limit`.
    fn find(&self, s: &[u8], from: usize, limit: usize) -> Option<usize> {
        let len = self.len();
        let limit = limit.min(s.len());
        if from > limit || limit - from < len {
            return None;
        }
        let hay = s.get(from..limit)?;
        let at = match self {
            Body::Empty => Some(0),
            Body::Literal { needle, fail } => kmp(hay, needle, fail),
            Body::Bits(b) => b.find(hay),
        };
        at.map(|p| from + p)
    }
}

/// The Knuth-Morris-Pratt failure function: `fail[i]` is the length of the longest proper
/// border of `needle[..=i]`.
fn failure(needle: &[u8]) -> Vec<usize> {
    let mut fail = vec![0; needle.len()];
    let mut k = 0;
    for i in 1..needle.len() {
        while k > 0 && needle[i] != needle[k] {
            k = fail[k - 1];
        }
        if needle[i] == needle[k] {
            k += 1;
        }
        fail[i] = k;
    }
    fail
}

/// The first occurrence of `needle` (not empty) in `hay`: at most 2 × `hay.len()` comparisons.
fn kmp(hay: &[u8], needle: &[u8], fail: &[usize]) -> Option<usize> {
    let mut k = 0;
    for (i, &b) in hay.iter().enumerate() {
        while k > 0 && needle[k] != b {
            k = fail[k - 1];
        }
        if needle[k] == b {
            k += 1;
            if k == needle.len() {
                return Some(i + 1 - k);
            }
        }
    }
    None
}

/// Shift-And (Baeza-Yates–Gonnet) over tokens of one byte each: bit `j` of the state is set
/// when the last `j + 1` bytes read match the first `j + 1` tokens. Bytes that every token
/// treats alike share one row of the table (`class_of`), so the table holds at most
/// min(256, tokens + 1) rows of `words` words.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShiftAnd {
    len: usize,
    words: usize,
    class_of: Box<[u8; 256]>,
    /// Row `class_of[b]` (`words` words): bit `j` set when token `j` accepts `b`.
    table: Vec<u64>,
}

impl ShiftAnd {
    fn new(tokens: &[Token]) -> ShiftAnd {
        let len = tokens.len();
        let words = len.div_ceil(64);
        // Bytes alike for every token share a class: a byte's signature is which of the
        // body's distinct literals and classes hold it (`?` holds every byte).
        let mut sets: Vec<ByteSet> = Vec::new();
        for t in tokens {
            let set = match t {
                Token::Literal(b) => {
                    let mut one = ByteSet::EMPTY;
                    one.insert(*b);
                    one
                }
                Token::Class(set) => *set,
                Token::Any | Token::Star => continue,
            };
            if !sets.contains(&set) {
                sets.push(set);
            }
        }
        let mut class_of = Box::new([0u8; 256]);
        let mut signatures: Vec<Vec<bool>> = Vec::new();
        for b in 0..=255u8 {
            let signature: Vec<bool> = sets.iter().map(|set| set.contains(b)).collect();
            let class = match signatures.iter().position(|s| *s == signature) {
                Some(c) => c,
                None => {
                    signatures.push(signature);
                    signatures.len() - 1
                }
            };
            class_of[usize::from(b)] = u8::try_from(class).unwrap_or(u8::MAX);
        }
        // One row per class, from one byte of it.
        let mut table = vec![0u64; signatures.len() * words];
        let mut done = vec![false; signatures.len()];
        for b in 0..=255u8 {
            let class = usize::from(class_of[usize::from(b)]);
            if std::mem::replace(&mut done[class], true) {
                continue;
            }
            let row = &mut table[class * words..(class + 1) * words];
            for (j, t) in tokens.iter().enumerate() {
                if t.accepts(b) {
                    row[j / 64] |= 1 << (j % 64);
                }
            }
        }
        ShiftAnd {
            len,
            words,
            class_of,
            table,
        }
    }

    /// The first `p` with all tokens matching `hay[p..p + len]`.
    fn find(&self, hay: &[u8]) -> Option<usize> {
        match self.words {
            1 => self.find_in::<1>(hay),
            2 => self.find_in::<2>(hay),
            3 => self.find_in::<3>(hay),
            4 => self.find_in::<4>(hay),
            _ => self.find_wide(hay),
        }
    }

    /// [`ShiftAnd::find`] with the state in `W` words on the stack (the words loop unrolled):
    /// every piece the limits allow.
    fn find_in<const W: usize>(&self, hay: &[u8]) -> Option<usize> {
        let last = 1u64 << ((self.len - 1) % 64);
        let rows: &[[u64; W]] = self.table.as_chunks::<W>().0;
        let mut state = [0u64; W];
        for (i, &b) in hay.iter().enumerate() {
            let row = rows.get(usize::from(self.class_of[usize::from(b)]))?;
            let mut carry = 1u64;
            for k in 0..W {
                let old = state[k];
                state[k] = ((old << 1) | carry) & row[k];
                carry = old >> 63;
            }
            if state[W - 1] & last != 0 {
                return Some(i + 1 - self.len);
            }
        }
        None
    }

    /// [`ShiftAnd::find`] for any number of words (patterns from the master, the AOF or a
    /// stored rule may be wider than the limits allow now).
    fn find_wide(&self, hay: &[u8]) -> Option<usize> {
        let w = self.words;
        let last = 1u64 << ((self.len - 1) % 64);
        let mut state: SmallVec<[u64; 8]> = SmallVec::from_elem(0, w);
        // Words at and above `live` are zero: only a carry out of word `live - 1` can make
        // word `live` non-zero, so each byte costs the live words plus one.
        let mut live = 0usize;
        for (i, &b) in hay.iter().enumerate() {
            let base = usize::from(self.class_of[usize::from(b)]) * w;
            let row = self.table.get(base..base + w)?;
            let top = (live + 1).min(w);
            let mut carry = 1u64;
            for (d, &r) in state.iter_mut().zip(row).take(top) {
                let old = *d;
                *d = ((old << 1) | carry) & r;
                carry = old >> 63;
            }
            live = top;
            while live > 0 && state[live - 1] == 0 {
                live -= 1;
            }
            if live == w && state[w - 1] & last != 0 {
                return Some(i + 1 - self.len);
            }
        }
        None
    }
}

/// The compiled form of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// No star: exactly these tokens, one byte each.
    Exact(Vec<Token>),
    Stars {
        head: Vec<Token>,
        middle: Vec<Segment>,
        tail: Vec<Token>,
        /// The shortest subject that can match.
        min_len: usize,
    },
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    plan: Plan,
    /// The leading `Literal` tokens, as bytes.
    prefix: Vec<u8>,
    literal: bool,
}

impl Glob {
    /// Compiles `pattern`. Never fails and never panics: every byte string is
    /// a valid pattern under Redis's rules.
    pub fn new(pattern: &[u8]) -> Glob {
        let tokens: Vec<Token> = compile(pattern).into_iter().map(simplify).collect();
        let prefix: Vec<u8> = tokens
            .iter()
            .map_while(|t| match t {
                Token::Literal(b) => Some(*b),
                _ => None,
            })
            .collect();
        let literal = prefix.len() == tokens.len();
        let mut parts = tokens.split(|t| *t == Token::Star);
        let head = parts.next().unwrap_or_default().to_vec();
        let mut rest: Vec<&[Token]> = parts.collect();
        let plan = match rest.pop() {
            None => Plan::Exact(head),
            Some(tail) => {
                let middle: Vec<Segment> = rest.into_iter().map(segment).collect();
                let min_len =
                    head.len() + tail.len() + middle.iter().map(Segment::len).sum::<usize>();
                Plan::Stars {
                    head,
                    middle,
                    tail: tail.to_vec(),
                    min_len,
                }
            }
        };
        Glob {
            plan,
            prefix,
            literal,
        }
    }

    /// Whether `subject` matches the whole pattern. At most [`Glob::cost`] steps, no recursion,
    /// no backtracking (see the module doc).
    pub fn matches(&self, subject: &[u8]) -> bool {
        let fits = |tokens: &[Token], bytes: &[u8]| {
            tokens.len() == bytes.len() && tokens.iter().zip(bytes).all(|(t, &b)| t.accepts(b))
        };
        match &self.plan {
            Plan::Exact(tokens) => fits(tokens, subject),
            Plan::Stars {
                head,
                middle,
                tail,
                min_len,
            } => {
                let n = subject.len();
                if n < *min_len {
                    return false;
                }
                let (h, t) = (head.len(), tail.len());
                if !fits(head, &subject[..h]) || !fits(tail, &subject[n - t..]) {
                    return false;
                }
                let limit = n - t;
                let mut at = h;
                for seg in middle {
                    match seg.place(subject, at, limit) {
                        Some(end) => at = end,
                        None => return false,
                    }
                }
                true
            }
        }
    }

    /// An upper bound of the steps [`Glob::matches`] takes on a subject of `len` bytes (one
    /// step: a byte compared, or one 64-bit word of Shift-And state updated).
    #[cfg(test)]
    pub fn cost(&self, len: usize) -> usize {
        match &self.plan {
            Plan::Exact(tokens) => tokens.len().min(len) + 1,
            Plan::Stars {
                head,
                middle,
                tail,
                min_len,
            } => {
                if len < *min_len {
                    return 1;
                }
                let per_byte = middle
                    .iter()
                    .map(Segment::steps_per_byte)
                    .max()
                    .unwrap_or(0);
                // KMP compares each byte at most twice.
                head.len() + tail.len() + middle.len() + len.saturating_mul(2 * per_byte) + 1
            }
        }
    }

    /// The literal bytes every match must start with (the pattern up to its
    /// first `*`, `?` or `[`, with `\` escapes resolved; a class of one byte counts as that
    /// byte). Empty when the pattern starts with a wildcard.
    pub fn literal_prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// True when the pattern has no wildcard at all (it matches exactly one
    /// string, `literal_prefix()`).
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// Heap bytes the compiled pattern holds (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        let tokens = |t: &Vec<Token>| t.capacity() * std::mem::size_of::<Token>();
        let body = |b: &Body| match b {
            Body::Empty => 0,
            Body::Literal { needle, fail } => {
                needle.capacity() + fail.capacity() * std::mem::size_of::<usize>()
            }
            Body::Bits(b) => std::mem::size_of::<ShiftAnd>() + 256 + b.table.capacity() * 8,
        };
        self.prefix.capacity()
            + match &self.plan {
                Plan::Exact(t) => tokens(t),
                Plan::Stars {
                    head, middle, tail, ..
                } => {
                    tokens(head)
                        + tokens(tail)
                        + middle.capacity() * std::mem::size_of::<Segment>()
                        + middle.iter().map(|s| body(&s.body)).sum::<usize>()
                }
            }
    }
}

/// The most tokens a searched piece with wildcards inside may have where a limit applies
/// ([`widest_search`]): two words of Shift-And state, so a key costs at most about 4 steps per
/// byte.
pub const MAX_SEARCHED_WILDCARD_PIECE: usize = 128;

/// The tokens of the longest middle segment that has a `?` or a class inside (leading and
/// trailing `?`s left out: those cost nothing); 0 when there is none. Literal segments do not
/// count: they are searched in linear time whatever their length. This is what
/// `Glob::matches` pays per key byte, in 64-token words.
pub fn widest_search(pattern: &[u8]) -> usize {
    let tokens: Vec<Token> = compile(pattern).into_iter().map(simplify).collect();
    let parts: Vec<&[Token]> = tokens.split(|t| *t == Token::Star).collect();
    if parts.len() < 3 {
        return 0;
    }
    parts[1..parts.len() - 1]
        .iter()
        .map(|seg| {
            let body = trim_any(seg);
            if body.iter().all(|t| matches!(t, Token::Literal(_))) {
                0
            } else {
                body.len()
            }
        })
        .max()
        .unwrap_or(0)
}

/// A middle segment: its leading and trailing `?`s become lengths.
fn segment(tokens: &[Token]) -> Segment {
    let body = trim_any(tokens);
    let skip = tokens.iter().take_while(|t| **t == Token::Any).count();
    Segment {
        skip,
        after: tokens.len() - skip - body.len(),
        body: Body::new(body),
    }
}

/// The tokens without their leading and trailing `?`s.
fn trim_any(tokens: &[Token]) -> &[Token] {
    let skip = tokens.iter().take_while(|t| **t == Token::Any).count();
    let rest = &tokens[skip..];
    let after = rest.iter().rev().take_while(|t| **t == Token::Any).count();
    &rest[..rest.len() - after]
}

/// Convenience: `Glob::new(pattern).matches(subject)`.
#[cfg(test)]
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

    /// The previous matcher, kept as a second reference for subjects too long for the
    /// recursive port: one backtrack point (the last star), O(tokens × subject).
    fn backtrack_ref(pattern: &[u8], subject: &[u8]) -> bool {
        let tokens = compile(pattern);
        if subject.is_empty() {
            return tokens.iter().all(|t| matches!(t, Token::Star));
        }
        let n = subject.len();
        let (mut t, mut s) = (0usize, 0usize);
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

    #[test]
    fn the_backtracking_reference_agrees_with_redis_on_small_inputs() {
        for (p, s) in [
            ("*a*b", "xaxb"),
            ("a*?b", "ab"),
            ("[^]*[a-", "x-"),
            ("*\\", "a\\"),
        ] {
            assert_eq!(
                backtrack_ref(p.as_bytes(), s.as_bytes()),
                redis_ref(p.as_bytes(), s.as_bytes())
            );
        }
    }

    #[test]
    fn segments_are_placed_leftmost() {
        // A later placement of the first segment would also fit; the leftmost leaves room.
        assert!(m("*ab*ab*", "abab"));
        assert!(m("*aba*a*", "ababa"));
        assert!(m("*aba*ba*", "ababa"));
        assert!(!m("*aba*bab*", "ababa"));
        assert!(m("*a?a*", "xaya"));
        // Leading and trailing `?`s of a segment are lengths around its body.
        assert!(m("*?a?*", "bab"));
        assert!(!m("*?a?*", "ba"));
        assert!(!m("*?a?*", "ab"));
        assert!(m("*??a?*", "xbab"));
        assert!(!m("*??a?*", "bab"));
        assert!(m("x*?a?*?b?*y", "xcadcbdy"));
        assert!(!m("x*?a?*?b?*y", "xcadbdy"));
        assert!(m("?*?", "ab"));
        assert!(!m("?*?", "a"));
        assert!(m("*??*??*", "abcd"));
        assert!(!m("*??*??*", "abc"));
        // Head and tail must not overlap.
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
        // KMP restarts inside a partial match.
        assert!(m("*aab*", "aaab"));
        assert!(m("*abac*", "ababac"));
        // Classes of one byte are literals; classes of every byte are `?`.
        assert!(m("*[a]b*", "xab"));
        assert!(m("*[^]b*", "xab"));
        assert!(m("*[a]?[b]*", "aab"));
    }

    #[test]
    fn long_segments_use_several_words() {
        // 130 tokens: three words of Shift-And state.
        let mut pattern = b"*a".to_vec();
        pattern.extend(std::iter::repeat_n(b'?', 64));
        pattern.extend_from_slice(b"[bc]");
        pattern.extend(std::iter::repeat_n(b'?', 63));
        pattern.extend_from_slice(b"d*");
        let g = Glob::new(&pattern);
        let mut subject = vec![b'x'; 10];
        subject.push(b'a');
        subject.extend(std::iter::repeat_n(b'a', 64));
        subject.push(b'c');
        subject.extend(std::iter::repeat_n(b'a', 63));
        subject.push(b'd');
        subject.extend_from_slice(b"zz");
        assert!(g.matches(&subject));
        assert_eq!(g.matches(&subject), backtrack_ref(&pattern, &subject));
        let last = subject.len() - 3;
        subject[last] = b'e';
        assert!(!g.matches(&subject));
        assert_eq!(g.matches(&subject), backtrack_ref(&pattern, &subject));
    }

    /// The worst cases of issue 22: the step bound is linear in the key.
    #[test]
    fn the_cost_per_key_is_linear_in_the_key() {
        let mut issue = b"*".to_vec();
        issue.extend(std::iter::repeat_n(b'?', 4094));
        issue.push(b'b');
        let key = vec![b'a'; 4096];
        let g = Glob::new(&issue);
        assert!(!g.matches(&key));
        let mut hit = key.clone();
        *hit.last_mut().unwrap() = b'b';
        assert!(g.matches(&hit));
        // Head and tail only: their length, not pattern × key.
        assert!(g.cost(key.len()) <= 2 * 4096 + 8, "{}", g.cost(key.len()));
        // A 4096-byte pattern whose middle is one long segment with wildcards inside: at most
        // 64 words per byte.
        let mut dense = b"*a".to_vec();
        dense.extend(std::iter::repeat_n(b'?', 4092));
        dense.extend_from_slice(b"b*");
        let g = Glob::new(&dense);
        assert!(!g.matches(&key));
        assert!(g.cost(key.len()) <= 2 * 64 * 4096 + 4096 + 8);
        // Many stars: the segments share one pass over the key.
        let many = b"a*".repeat(2_048);
        let g = Glob::new(&many);
        assert!(g.matches(&key));
        assert!(g.cost(key.len()) <= 2 * 4096 + 4096 + 8);
        // A key shorter than the pattern's minimum length costs one step.
        assert_eq!(Glob::new(&issue).cost(100), 1);
    }

    #[test]
    fn widest_search_counts_pieces_with_wildcards_inside() {
        assert_eq!(widest_search(b"user:*"), 0);
        assert_eq!(
            widest_search(b"*abc*"),
            0,
            "literal pieces are searched in linear time"
        );
        assert_eq!(
            widest_search(b"*??a?b??*"),
            3,
            "leading and trailing ? cost nothing"
        );
        assert_eq!(widest_search(b"*a[xy]b*c?d*"), 3);
        assert_eq!(
            widest_search(b"a?b*c[d]e"),
            0,
            "head and tail are not searched"
        );
        let mut issue = b"*".to_vec();
        issue.extend(std::iter::repeat_n(b'?', 4094));
        issue.push(b'b');
        assert_eq!(widest_search(&issue), 0);
        let mut dense = b"*a".to_vec();
        dense.extend(std::iter::repeat_n(b'?', 4092));
        dense.extend_from_slice(b"b*");
        assert_eq!(widest_search(&dense), 4094);
    }

    fn token_strategy() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "a", "b", "c", "?", "*", "[ab]", "[^a]", "[b-c]", "[a]", "[^]", "\\*", "**",
        ])
    }

    fn long_pattern_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(token_strategy(), 0..=160).prop_map(|t| t.concat().into_bytes())
    }

    fn long_subject_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"abc*".to_vec()), 0..=300)
    }

    /// Tokens for long segments: stars are rare, so segments run past one 64-bit word.
    fn segment_token_strategy() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            30 => prop::sample::select(vec!["a", "b", "?", "[ab]", "[^a]", "[a]"]),
            1 => Just("*"),
        ]
    }

    /// A subject the pattern (nearly) matches: one byte per token from `fill`, a few per star,
    /// with `pad` bytes before and after.
    fn subject_for(tokens: &[&str], fill: &[u8], pad: usize) -> Vec<u8> {
        let mut fill = fill.iter().copied().cycle();
        let mut subject: Vec<u8> = fill.by_ref().take(pad).collect();
        for t in tokens {
            match *t {
                "*" | "**" => subject.extend(fill.by_ref().take(2)),
                "\\\\*" => subject.push(b'*'),
                "a" | "[a]" => subject.push(b'a'),
                "b" => subject.push(b'b'),
                _ => subject.push(fill.next().unwrap_or(b'a')),
            }
        }
        subject.extend(fill.take(pad));
        subject
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

        /// Subjects made from the pattern itself (so that matches are common), against both
        /// references.
        #[test]
        fn subjects_built_from_the_pattern_match_like_redis(
            tokens in prop::collection::vec(token_strategy(), 0..=12),
            fill in prop::collection::vec(prop::sample::select(b"abc".to_vec()), 0..=24),
            flip in any::<prop::sample::Index>(),
        ) {
            let pattern = tokens.concat().into_bytes();
            // One byte per token, a few more per star, so most subjects almost match.
            let mut subject = Vec::new();
            let mut fill = fill.into_iter().cycle();
            for t in &tokens {
                match *t {
                    "*" | "**" => subject.extend(fill.by_ref().take(2)),
                    "\\*" => subject.push(b'*'),
                    _ => subject.push(fill.next().unwrap_or(b'a')),
                }
            }
            for s in [subject.clone(), {
                let mut s = subject.clone();
                if !s.is_empty() {
                    let i = flip.index(s.len());
                    s[i] = if s[i] == b'a' { b'b' } else { b'a' };
                }
                s
            }] {
                let got = Glob::new(&pattern).matches(&s);
                prop_assert_eq!(got, backtrack_ref(&pattern, &s));
                prop_assert_eq!(got, redis_ref(&pattern, &s));
            }
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Segments of 60 to 330 tokens (one to six words) with subjects built to (nearly) match them, against
        /// the backtracking reference: exercises Shift-And over several words.
        #[test]
        fn long_segments_match_like_the_backtracking_reference(
            tokens in prop::collection::vec(segment_token_strategy(), 60..=330),
            fill in prop::collection::vec(prop::sample::select(b"abc".to_vec()), 1..=16),
            pad in 0usize..=3,
            star_ends in any::<(bool, bool)>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let mut tokens = tokens;
            if star_ends.0 {
                tokens.insert(0, "*");
            }
            if star_ends.1 {
                tokens.push("*");
            }
            let pattern = tokens.concat().into_bytes();
            let subject = subject_for(&tokens, &fill, pad);
            let mut flipped = subject.clone();
            let i = flip.index(flipped.len());
            flipped[i] = if flipped[i] == b'a' { b'b' } else { b'a' };
            let g = Glob::new(&pattern);
            for s in [&subject, &flipped] {
                prop_assert_eq!(
                    g.matches(s),
                    backtrack_ref(&pattern, s),
                    "pattern {:?} subject {:?}",
                    pattern.escape_ascii().to_string(),
                    s.escape_ascii().to_string()
                );
            }
        }

        /// One piece of 257 to 330 tokens between two stars (five or six words: wider than
        /// the limits allow now, as patterns from the master or the AOF may be).
        #[test]
        fn wide_pieces_match_like_the_backtracking_reference(
            tokens in prop::collection::vec(
                prop::sample::select(vec!["a", "b", "?", "[ab]", "[^a]"]),
                257..=330,
            ),
            fill in prop::collection::vec(prop::sample::select(b"abc".to_vec()), 1..=16),
            pad in 0usize..=3,
            flip in any::<prop::sample::Index>(),
        ) {
            let mut tokens = tokens;
            tokens.insert(0, "*");
            tokens.push("*");
            let pattern = tokens.concat().into_bytes();
            let subject = subject_for(&tokens, &fill, pad);
            let mut flipped = subject.clone();
            let i = flip.index(flipped.len());
            flipped[i] = if flipped[i] == b'a' { b'b' } else { b'a' };
            let g = Glob::new(&pattern);
            for s in [&subject, &flipped] {
                prop_assert_eq!(g.matches(s), backtrack_ref(&pattern, s));
            }
        }

        /// Longer patterns (segments beyond one 64-bit word) and subjects, against the
        /// backtracking reference.
        #[test]
        fn long_inputs_match_like_the_backtracking_reference(
            pattern in long_pattern_strategy(),
            subject in long_subject_strategy(),
        ) {
            prop_assert_eq!(
                Glob::new(&pattern).matches(&subject),
                backtrack_ref(&pattern, &subject),
                "pattern {:?} subject {:?}",
                pattern.escape_ascii().to_string(),
                subject.escape_ascii().to_string()
            );
        }
    }
}
