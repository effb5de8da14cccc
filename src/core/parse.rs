//! Argument parsing: each command's arguments become a typed struct, fully validated before
//! anything is changed. `args[0]` is the command name.

use crate::core::index::Selector;
use crate::error::{CacheError, Result};

pub type Bytes = Vec<u8>;

fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Parses an integer the way Redis's `string2ll` does: optional minus, digits, no spaces or `+`.
pub fn parse_i64(arg: &[u8]) -> Result<i64> {
    // One pass over the bytes (a GUARD token has 19 digits on every guarded CACHE.SET).
    let (negative, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, arg),
    };
    // As `string2ll`: no leading zero, and no `-0`.
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || negative)) {
        return Err(CacheError::NotInteger);
    }
    // Eighteen digits cannot overflow a u64; only those past them are checked, and the first
    // sixteen go eight at a time. No error is made unless one is returned (`ok_or` would make
    // and drop one per digit).
    let (head, tail) = digits.split_at(digits.len().min(18));
    let mut n: u64 = 0;
    let mut chunks = head.chunks_exact(8);
    for chunk in &mut chunks {
        n = n * 100_000_000 + eight_digits(chunk)?;
    }
    for &b in chunks.remainder() {
        let digit = b.wrapping_sub(b'0');
        if digit >= 10 {
            return Err(CacheError::NotInteger);
        }
        n = n * 10 + u64::from(digit);
    }
    for &b in tail {
        let digit = b.wrapping_sub(b'0');
        match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(digit)))
        {
            Some(next) if digit < 10 => n = next,
            _ => return Err(CacheError::NotInteger),
        }
    }
    if negative {
        // Down to i64::MIN, whose magnitude is one past i64::MAX.
        if n > i64::MAX as u64 + 1 {
            return Err(CacheError::NotInteger);
        }
        Ok((n as i64).wrapping_neg())
    } else {
        i64::try_from(n).map_err(|_| CacheError::NotInteger)
    }
}

/// The number eight ASCII digits spell (`chunk` has eight bytes), in a few word operations.
fn eight_digits(chunk: &[u8]) -> Result<u64> {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    let raw = u64::from_le_bytes(bytes);
    // Each byte less '0' must be at most 9: a byte below '0' borrows and sets its top bit, and
    // adding 0x76 sets the top bit of a byte of 10 or more (a carry out of a byte only comes
    // from one whose top bit is set already).
    let v = raw.wrapping_sub(0x3030_3030_3030_3030);
    if (v | v.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080 != 0 {
        return Err(CacheError::NotInteger);
    }
    // Pairs of digits, then fours, then the eight (the first digit is the lowest byte).
    let v = (v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    Ok((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32)
}

/// A user-supplied word for an error message: lossy UTF-8, no line breaks, bounded length.
fn word(arg: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(arg)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(64)
        .collect();
    s
}

/// When an entry stops being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No option given: `cache.default-ttl-seconds` applies.
    Default,
    /// KEEPTTL: keep the deadline of the entry being replaced (none for a new entry).
    Keep,
    /// An absolute deadline in Unix milliseconds.
    At(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Always,
    IfMissing,
    IfExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetArgs<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub expiry: Expiry,
    /// The deadline came from EX or PX (relative to the server's clock).
    pub relative_ttl: bool,
    pub condition: Condition,
    /// The names as sent (borrowed from the arguments; not yet sorted or deduplicated).
    pub tags: &'a [&'a [u8]],
    pub deps: &'a [&'a [u8]],
    pub meta: Option<&'a str>,
    /// GUARD token: store only if no invalidation since the token would select the entry.
    pub guard: Option<i64>,
}

const SET: &str = "cache.set";

impl<'a> SetArgs<'a> {
    /// `key` and `value` with no option given.
    fn new(key: &'a [u8], value: &'a [u8]) -> SetArgs<'a> {
        SetArgs {
            key,
            value,
            expiry: Expiry::Default,
            relative_ttl: false,
            condition: Condition::Always,
            tags: &[],
            deps: &[],
            meta: None,
            guard: None,
        }
    }
}

/// `CACHE.SET key value [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] [NX|XX] [TAGS n t..] [DEPENDS n r..]
/// [META json]`; `now_ms` turns relative times into deadlines.
pub fn parse_set<'a>(args: &'a [&'a [u8]], now_ms: i64) -> Result<SetArgs<'a>> {
    if args.len() < 3 {
        return Err(CacheError::WrongArity(SET));
    }
    let mut out = SetArgs::new(args[1], args[2]);
    let mut seen = Seen::default();
    let mut i = 3;
    while i < args.len() {
        i = set_option(args, i, now_ms, &mut out, &mut seen, SET)?;
    }
    Ok(out)
}

/// Which options of one entry were given (each at most once).
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    ttl: bool,
    cond: bool,
    tags: bool,
    deps: bool,
}

/// The option of CACHE.SET at `args[i]` into `out`; the index after it. For CACHE.MSET (`cmd`
/// is `MSET`) only the expiry, TAGS, DEPENDS and META are options: KEEPTTL, NX, XX and GUARD
/// are syntax errors there.
fn set_option<'a>(
    args: &'a [&'a [u8]],
    i: usize,
    now_ms: i64,
    out: &mut SetArgs<'a>,
    seen: &mut Seen,
    cmd: &'static str,
) -> Result<usize> {
    let single = cmd == SET;
    let opt = args[i];
    let next = args.get(i + 1).copied();
    // The first letter picks the one word to compare with (every CACHE.SET parses its options).
    let first = opt.first().map_or(0, u8::to_ascii_uppercase);
    if matches!(first, b'E' | b'P') && ["EX", "PX", "EXAT", "PXAT"].iter().any(|w| eq(opt, w)) {
        let n = next.ok_or(CacheError::Syntax)?;
        if seen.ttl {
            return Err(CacheError::Syntax);
        }
        seen.ttl = true;
        out.expiry = Expiry::At(deadline(opt, n, now_ms, cmd)?);
        out.relative_ttl = eq(opt, "EX") || eq(opt, "PX");
        Ok(i + 2)
    } else if first == b'K' && single && eq(opt, "KEEPTTL") {
        if seen.ttl {
            return Err(CacheError::Syntax);
        }
        seen.ttl = true;
        out.expiry = Expiry::Keep;
        Ok(i + 1)
    } else if matches!(first, b'N' | b'X') && single && (eq(opt, "NX") || eq(opt, "XX")) {
        if seen.cond {
            return Err(CacheError::Syntax);
        }
        seen.cond = true;
        out.condition = if eq(opt, "NX") {
            Condition::IfMissing
        } else {
            Condition::IfExists
        };
        Ok(i + 1)
    } else if (first == b'T' && eq(opt, "TAGS")) || (first == b'D' && eq(opt, "DEPENDS")) {
        let is_tags = first == b'T';
        let given = if is_tags {
            &mut seen.tags
        } else {
            &mut seen.deps
        };
        if *given {
            return Err(CacheError::Syntax);
        }
        *given = true;
        let (names, used) = counted(&args[i + 1..])?;
        if is_tags {
            out.tags = names;
        } else {
            out.deps = names;
        }
        Ok(i + 1 + used)
    } else if first == b'M' && eq(opt, "META") {
        let json = next.ok_or(CacheError::Syntax)?;
        if out.meta.is_some() {
            return Err(CacheError::Syntax);
        }
        out.meta = Some(parse_meta(json)?);
        Ok(i + 2)
    } else if first == b'G' && single && eq(opt, "GUARD") {
        let token = next.ok_or(CacheError::Syntax)?;
        if out.guard.is_some() {
            return Err(CacheError::Syntax);
        }
        out.guard = Some(parse_i64(token)?);
        Ok(i + 2)
    } else {
        Err(CacheError::Syntax)
    }
}

const MSET: &str = "cache.mset";

/// `CACHE.MSET [options] ENTRY key value [options] [ENTRY key value [options] ...]`: the
/// options before the first ENTRY are shared; an entry's own option of a kind (expiry, TAGS,
/// DEPENDS, META) replaces the shared one of that kind. Each entry with the position of its key
/// in `args`, in order.
pub fn parse_mset<'a>(args: &'a [&'a [u8]], now_ms: i64) -> Result<Vec<(usize, SetArgs<'a>)>> {
    let blank = SetArgs::new;
    let entry_at = |i: usize| args.get(i).is_some_and(|w| eq(w, "ENTRY"));
    let mut shared = blank(b"", b"");
    let mut shared_seen = Seen::default();
    let mut i = 1;
    while i < args.len() && !entry_at(i) {
        i = set_option(args, i, now_ms, &mut shared, &mut shared_seen, MSET)?;
    }
    if i >= args.len() {
        return Err(CacheError::WrongArity(MSET));
    }
    let mut out = Vec::new();
    while i < args.len() {
        let (Some(key), Some(value)) = (args.get(i + 1), args.get(i + 2)) else {
            return Err(CacheError::Syntax);
        };
        let mut e = blank(key, value);
        let mut seen = Seen::default();
        let at = i + 1;
        i += 3;
        while i < args.len() && !entry_at(i) {
            i = set_option(args, i, now_ms, &mut e, &mut seen, MSET)?;
        }
        if !seen.ttl {
            e.expiry = shared.expiry;
            e.relative_ttl = shared.relative_ttl;
        }
        if !seen.tags {
            e.tags = shared.tags;
        }
        if !seen.deps {
            e.deps = shared.deps;
        }
        if e.meta.is_none() {
            e.meta = shared.meta;
        }
        out.push((at, e));
    }
    Ok(out)
}

/// The deadline an EX/PX/EXAT/PXAT option sets, with Redis's checks and wording.
fn deadline(unit: &[u8], arg: &[u8], now_ms: i64, cmd: &'static str) -> Result<i64> {
    let n = parse_i64(arg)?;
    let bad = CacheError::InvalidExpire(cmd);
    if n <= 0 {
        return Err(bad);
    }
    let seconds = eq(unit, "EX") || eq(unit, "EXAT");
    let ms = if seconds {
        n.checked_mul(1000).ok_or(bad.clone())?
    } else {
        n
    };
    if eq(unit, "EX") || eq(unit, "PX") {
        ms.checked_add(now_ms).ok_or(bad)
    } else {
        Ok(ms)
    }
}

/// `count name [name ...]`: returns the names and how many arguments were used.
fn counted<'a>(rest: &'a [&'a [u8]]) -> Result<(&'a [&'a [u8]], usize)> {
    let count = rest.first().ok_or(CacheError::Syntax)?;
    let n = parse_i64(count)?;
    if n < 0 || n as u64 > (rest.len() - 1) as u64 {
        return Err(CacheError::Syntax);
    }
    let n = n as usize;
    Ok((&rest[1..=n], n + 1))
}

/// META must be a JSON object; it is stored as sent. Validated without building a tree.
pub fn parse_meta(json: &[u8]) -> Result<&str> {
    serde_json::from_slice::<serde::de::IgnoredAny>(json)
        .map_err(|e| CacheError::MetaNotJson(e.to_string()))?;
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(CacheError::MetaNotObject);
    }
    // Valid JSON is UTF-8.
    std::str::from_utf8(json).map_err(|e| CacheError::MetaNotJson(e.to_string()))
}

/// `CACHE.TAG key tag [tag ...]` and `CACHE.DEPEND key resource [resource ...]`.
pub fn parse_key_names(args: &[&[u8]], cmd: &'static str) -> Result<(Bytes, Vec<Bytes>)> {
    if args.len() < 3 {
        return Err(CacheError::WrongArity(cmd));
    }
    Ok((
        args[1].to_vec(),
        args[2..].iter().map(|a| a.to_vec()).collect(),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Immediate,
    Lazy,
    Batched,
    /// Covered entries become stale for GRACE seconds (None: `cache.soft-grace-seconds`).
    Soft(Option<i64>),
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Immediate => "immediate",
            Strategy::Lazy => "lazy",
            Strategy::Batched => "batched",
            Strategy::Soft(_) => "soft",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidateArgs {
    /// None: `cache.max-cascade-depth`.
    pub depth: Option<u32>,
    pub context: Option<Bytes>,
    pub strategy: Strategy,
    pub selector: Selector,
}

/// `CACHE.INVALIDATE [DEPTH n] [CONTEXT text] [STRATEGY s] <selector>`, or with `dry_run` the
/// options CACHE.KEYS takes (`[DEPTH n] <selector>`).
pub fn parse_invalidate(
    args: &[&[u8]],
    cmd: &'static str,
    dry_run: bool,
) -> Result<InvalidateArgs> {
    if args.len() < 2 {
        return Err(CacheError::WrongArity(cmd));
    }
    let mut out = InvalidateArgs {
        depth: None,
        context: None,
        strategy: Strategy::Immediate,
        selector: Selector::All,
    };
    let mut have_strategy = false;
    let mut grace: Option<i64> = None;
    let mut i = 1;
    loop {
        let Some(&opt) = args.get(i) else {
            return Err(CacheError::Syntax);
        };
        let next = args.get(i + 1).copied();
        if eq(opt, "DEPTH") {
            let n = parse_i64(next.ok_or(CacheError::Syntax)?)?;
            if out.depth.is_some() {
                return Err(CacheError::Syntax);
            }
            if n < 0 {
                return Err(CacheError::NegativeDepth);
            }
            out.depth = Some(u32::try_from(n).unwrap_or(u32::MAX));
        } else if eq(opt, "CONTEXT") && !dry_run {
            let text = next.ok_or(CacheError::Syntax)?;
            if out.context.is_some() {
                return Err(CacheError::Syntax);
            }
            out.context = Some(text.to_vec());
        } else if eq(opt, "STRATEGY") && !dry_run {
            let s = next.ok_or(CacheError::Syntax)?;
            if have_strategy {
                return Err(CacheError::Syntax);
            }
            have_strategy = true;
            out.strategy = if eq(s, "IMMEDIATE") {
                Strategy::Immediate
            } else if eq(s, "LAZY") {
                Strategy::Lazy
            } else if eq(s, "BATCHED") {
                Strategy::Batched
            } else if eq(s, "SOFT") {
                Strategy::Soft(None)
            } else {
                return Err(CacheError::UnknownStrategy(word(s)));
            };
        } else if eq(opt, "GRACE") && !dry_run {
            if grace.is_some() {
                return Err(CacheError::Syntax);
            }
            grace = Some(parse_grace(next.ok_or(CacheError::Syntax)?)?);
        } else {
            out.selector = parse_selector(&args[i..])?;
            match (out.strategy, grace) {
                (Strategy::Soft(_), g) => out.strategy = Strategy::Soft(g),
                // GRACE belongs to STRATEGY SOFT.
                (_, Some(_)) => return Err(CacheError::Syntax),
                (_, None) => {}
            }
            return Ok(out);
        }
        i += 2;
    }
}

/// The GRACE of a SOFT invalidation: whole seconds, 1 up to `i32::MAX` (the range of
/// `cache.soft-grace-seconds`).
fn parse_grace(arg: &[u8]) -> Result<i64> {
    let n = parse_i64(arg)?;
    if n <= 0 {
        return Err(CacheError::NotPositive);
    }
    if n > i64::from(i32::MAX) {
        return Err(CacheError::NotInteger);
    }
    Ok(n)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchArgs<'a> {
    pub key: &'a [u8],
    /// LEASE in ms (None: `cache.lease-ms`).
    pub lease_ms: Option<i64>,
    /// WITHTOKEN: the reply carries the node's invalidation token as a third element.
    pub with_token: bool,
}

/// `CACHE.FETCH key [LEASE ms] [WITHTOKEN]`, ms from 1 up to `i32::MAX` (the range of
/// `cache.lease-ms`); the options in any order, each once.
pub fn parse_fetch<'a>(args: &[&'a [u8]]) -> Result<FetchArgs<'a>> {
    if args.len() < 2 {
        return Err(CacheError::WrongArity("cache.fetch"));
    }
    if args.len() > 5 {
        return Err(CacheError::Syntax);
    }
    let mut out = FetchArgs {
        key: args[1],
        lease_ms: None,
        with_token: false,
    };
    let mut i = 2;
    while i < args.len() {
        if eq(args[i], "LEASE") && out.lease_ms.is_none() {
            let n = parse_i64(args.get(i + 1).ok_or(CacheError::Syntax)?)?;
            if n <= 0 {
                return Err(CacheError::NotPositive);
            }
            if n > i64::from(i32::MAX) {
                return Err(CacheError::NotInteger);
            }
            out.lease_ms = Some(n);
            i += 2;
        } else if eq(args[i], "WITHTOKEN") && !out.with_token {
            out.with_token = true;
            i += 1;
        } else {
            return Err(CacheError::Syntax);
        }
    }
    Ok(out)
}

/// `CACHE.TOKEN [key]`: the key only routes the command in a cluster.
pub fn parse_token(args: &[&[u8]]) -> Result<()> {
    match args.len() {
        1 | 2 => Ok(()),
        _ => Err(CacheError::WrongArity("cache.token")),
    }
}

/// `KEY k..`, `TAG t..`, `PATTERN glob`, `NAMESPACE ns`, `ALL`, `DEPENDENTS r..`.
fn parse_selector(args: &[&[u8]]) -> Result<Selector> {
    let kind = args[0];
    let rest: Vec<Bytes> = args[1..].iter().map(|a| a.to_vec()).collect();
    let one = |rest: Vec<Bytes>| -> Result<Bytes> {
        match <[Bytes; 1]>::try_from(rest) {
            Ok([x]) => Ok(x),
            Err(_) => Err(CacheError::Syntax),
        }
    };
    let some = |rest: Vec<Bytes>| -> Result<Vec<Bytes>> {
        if rest.is_empty() {
            Err(CacheError::Syntax)
        } else {
            Ok(rest)
        }
    };
    if eq(kind, "KEY") {
        Ok(Selector::Keys(some(rest)?))
    } else if eq(kind, "TAG") {
        Ok(Selector::Tags(some(rest)?))
    } else if eq(kind, "DEPENDENTS") {
        Ok(Selector::Dependents(some(rest)?))
    } else if eq(kind, "PATTERN") {
        Ok(Selector::Pattern(one(rest)?))
    } else if eq(kind, "NAMESPACE") {
        Ok(Selector::Namespace(one(rest)?))
    } else if eq(kind, "ALL") {
        if rest.is_empty() {
            Ok(Selector::All)
        } else {
            Err(CacheError::Syntax)
        }
    } else {
        Err(CacheError::UnknownSelector(word(kind)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsArgs {
    pub pattern: Option<Bytes>,
    pub count: Option<usize>,
}

/// `CACHE.TAGS [MATCH glob] [COUNT n]`.
pub fn parse_tags(args: &[&[u8]]) -> Result<TagsArgs> {
    let mut out = TagsArgs {
        pattern: None,
        count: None,
    };
    let mut i = 1;
    while i < args.len() {
        let next = args.get(i + 1).ok_or(CacheError::Syntax)?;
        if eq(args[i], "MATCH") && out.pattern.is_none() {
            out.pattern = Some(next.to_vec());
        } else if eq(args[i], "COUNT") && out.count.is_none() {
            let n = parse_i64(next)?;
            if n <= 0 {
                return Err(CacheError::NotPositive);
            }
            out.count = Some(usize::try_from(n).unwrap_or(usize::MAX));
        } else {
            return Err(CacheError::Syntax);
        }
        i += 2;
    }
    Ok(out)
}

/// Exactly `n` arguments after the command name.
pub fn exact(args: &[&[u8]], n: usize, cmd: &'static str) -> Result<()> {
    if args.len() == n + 1 {
        Ok(())
    } else {
        Err(CacheError::WrongArity(cmd))
    }
}

/// At least `n` arguments after the command name.
pub fn at_least(args: &[&[u8]], n: usize, cmd: &'static str) -> Result<()> {
    if args.len() > n {
        Ok(())
    } else {
        Err(CacheError::WrongArity(cmd))
    }
}

/// `[JSON]` (CACHE.STATS, CACHE.RECOMMEND): whether the JSON form was asked for.
pub fn parse_json_flag(args: &[&[u8]], cmd: &'static str) -> Result<bool> {
    match args.len() {
        1 => Ok(false),
        2 if eq(args[1], "JSON") => Ok(true),
        2 => Err(CacheError::Syntax),
        _ => Err(CacheError::WrongArity(cmd)),
    }
}

/// `[COUNT n]` (CACHE.EVENTS, CACHE.HOTKEYS), n >= 1.
pub fn parse_count(args: &[&[u8]], cmd: &'static str) -> Result<Option<usize>> {
    match args.len() {
        1 => Ok(None),
        3 if eq(args[1], "COUNT") => {
            let n = parse_i64(args[2])?;
            if n <= 0 {
                return Err(CacheError::NotPositive);
            }
            Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
        }
        2 | 3 => Err(CacheError::Syntax),
        _ => Err(CacheError::WrongArity(cmd)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingArgs {
    List,
    Flush,
    Help,
    /// Replication of the queue (from a master or the AOF only).
    Add(Vec<u8>),
    Coalesce(u64),
    Done(u64),
    /// `LAZY`: list the LAZY marks.
    Lazy,
    /// A LAZY mark for a database (replication only).
    Mark(usize, Vec<u8>),
    /// The master reclaimed a database's marks up to a generation (replication only).
    Reclaimed(usize, u64),
    /// An entry's generation (AOF rewrite only).
    Born(Vec<u8>, u64),
    /// The module-wide state: BATCHED queue, rules, LAZY marks (AOF rewrite only).
    State(Vec<u8>, Vec<u8>, Vec<u8>),
    /// `STALE <deadline-ms> <key> [key ...]`: a SOFT invalidation marked these entries of the
    /// selected database stale until the deadline (replication only).
    Stale(i64, Vec<Vec<u8>>),
}

/// `CACHE.PENDING [FLUSH | LAZY | HELP]`; with `replayed` (the command came from the master or
/// the AOF) also `ADD <request>`, `COALESCE <id>`, `DONE <id>`, `MARK <db> <mark>` and
/// `RECLAIMED <db> <generation>`, and from an AOF rewrite `BORN <key> <generation>` and
/// `STATE <queue> <rules> <marks>`, which clients cannot send.
/// The subcommands of CACHE.PENDING that only replication and the AOF send.
const PENDING_INTERNAL: [&str; 8] = [
    "ADD",
    "COALESCE",
    "DONE",
    "MARK",
    "RECLAIMED",
    "BORN",
    "STATE",
    "STALE",
];

pub fn parse_pending(args: &[&[u8]], replayed: bool) -> Result<PendingArgs> {
    let id = |a: &[u8]| -> Result<u64> {
        u64::try_from(parse_i64(a)?).map_err(|_| CacheError::NotInteger)
    };
    let db = |a: &[u8]| -> Result<usize> {
        usize::try_from(parse_i64(a)?).map_err(|_| CacheError::NotInteger)
    };
    match args.len() {
        1 => Ok(PendingArgs::List),
        2 if eq(args[1], "FLUSH") => Ok(PendingArgs::Flush),
        2 if eq(args[1], "HELP") => Ok(PendingArgs::Help),
        3 if replayed && eq(args[1], "ADD") => Ok(PendingArgs::Add(args[2].to_vec())),
        3 if replayed && eq(args[1], "COALESCE") => Ok(PendingArgs::Coalesce(id(args[2])?)),
        3 if replayed && eq(args[1], "DONE") => Ok(PendingArgs::Done(id(args[2])?)),
        2 if eq(args[1], "LAZY") => Ok(PendingArgs::Lazy),
        4 if replayed && eq(args[1], "MARK") => {
            Ok(PendingArgs::Mark(db(args[2])?, args[3].to_vec()))
        }
        4 if replayed && eq(args[1], "RECLAIMED") => {
            Ok(PendingArgs::Reclaimed(db(args[2])?, id(args[3])?))
        }
        4 if replayed && eq(args[1], "BORN") => {
            Ok(PendingArgs::Born(args[2].to_vec(), id(args[3])?))
        }
        5 if replayed && eq(args[1], "STATE") => Ok(PendingArgs::State(
            args[2].to_vec(),
            args[3].to_vec(),
            args[4].to_vec(),
        )),
        n if n >= 4 && replayed && eq(args[1], "STALE") => Ok(PendingArgs::Stale(
            parse_i64(args[2])?,
            args[3..].iter().map(|k| k.to_vec()).collect(),
        )),
        n if n >= 2 && !replayed && PENDING_INTERNAL.iter().any(|w| eq(args[1], w)) => {
            Err(CacheError::Message(format!(
                "ERR CACHE.PENDING {} is internal: only the master and the AOF send it",
                word(args[1]).to_uppercase()
            )))
        }
        2 => Err(CacheError::UnknownSubcommand(
            word(args[1]),
            "CACHE.PENDING",
        )),
        _ => Err(CacheError::WrongArity("cache.pending")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugArgs {
    Verify,
    Rebuild,
    /// `RECLAIM STEP [keys]`: one reclaimer step now, looking at up to `keys` entries (default
    /// the step's time budget alone bounds it).
    ReclaimStep(Option<usize>),
    /// `RECLAIM PAUSE` / `RECLAIM RESUME`: the timer-driven reclaimer stops or goes on (tests).
    ReclaimPause(bool),
    Help,
}

pub fn parse_debug(args: &[&[u8]]) -> Result<DebugArgs> {
    const CMD: &str = "cache.debug";
    at_least(args, 1, CMD)?;
    let sub = args[1];
    let which = if eq(sub, "VERIFY") {
        DebugArgs::Verify
    } else if eq(sub, "REBUILD") {
        DebugArgs::Rebuild
    } else if eq(sub, "RECLAIM") {
        at_least(args, 2, CMD)?;
        let how = args[2];
        let which = if eq(how, "STEP") {
            match args.get(3) {
                None => DebugArgs::ReclaimStep(None),
                Some(n) => {
                    let n = usize::try_from(parse_i64(n)?)
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(CacheError::NotPositive)?;
                    DebugArgs::ReclaimStep(Some(n))
                }
            }
        } else if eq(how, "PAUSE") {
            DebugArgs::ReclaimPause(true)
        } else if eq(how, "RESUME") {
            DebugArgs::ReclaimPause(false)
        } else {
            return Err(CacheError::Syntax);
        };
        let max = if matches!(which, DebugArgs::ReclaimStep(_)) {
            3
        } else {
            2
        };
        if args.len() > max + 1 {
            return Err(CacheError::Syntax);
        }
        return Ok(which);
    } else if eq(sub, "HELP") {
        DebugArgs::Help
    } else {
        return Err(CacheError::UnknownSubcommand(word(sub), "CACHE.DEBUG"));
    };
    exact(args, 1, CMD)?;
    Ok(which)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert_eq, proptest};

    const NOW: i64 = 1_000_000;

    fn a(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(str::as_bytes).collect()
    }

    fn mset(s: &'static str) -> Result<Vec<(usize, SetArgs<'static>)>> {
        let args: &'static [&'static [u8]] =
            s.split(' ').map(str::as_bytes).collect::<Vec<_>>().leak();
        parse_mset(args, NOW)
    }

    #[test]
    fn mset_shares_options_and_an_entrys_own_replace_them() {
        let v = mset(
            "CACHE.MSET PX 10 TAGS 2 a ENTRY META {} ENTRY k1 v1 ENTRY k2 v2 TAGS 0 EXAT 5 \
             ENTRY ENTRY v3 DEPENDS 1 r META {\"x\":1}",
        )
        .unwrap();
        let keys: Vec<(usize, &[u8])> = v.iter().map(|(at, e)| (*at, e.key)).collect();
        assert_eq!(keys, vec![(10, &b"k1"[..]), (13, b"k2"), (20, b"ENTRY")]);
        let (_, k1) = &v[0];
        assert_eq!(k1.expiry, Expiry::At(NOW + 10));
        assert!(k1.relative_ttl);
        assert_eq!(k1.tags, &[&b"a"[..], b"ENTRY"]);
        assert_eq!(k1.meta, Some("{}"));
        let (_, k2) = &v[1];
        assert_eq!(k2.expiry, Expiry::At(5_000));
        assert!(!k2.relative_ttl);
        assert!(
            k2.tags.is_empty(),
            "its own TAGS 0 replaces the shared tags"
        );
        let (_, k3) = &v[2];
        assert_eq!(k3.deps, &[&b"r"[..]]);
        assert_eq!(k3.meta, Some("{\"x\":1}"));
        assert_eq!(k3.tags.len(), 2);
    }

    #[test]
    fn mset_refuses_what_cache_set_alone_may_say() {
        for bad in [
            "CACHE.MSET ENTRY k v NX",
            "CACHE.MSET XX ENTRY k v",
            "CACHE.MSET ENTRY k v KEEPTTL",
            "CACHE.MSET ENTRY k v GUARD 1",
            "CACHE.MSET ENTRY k v TAGS 1 a TAGS 1 b",
            "CACHE.MSET ENTRY k",
            "CACHE.MSET ENTRY k v ENTRY",
            "CACHE.MSET BOGUS ENTRY k v",
        ] {
            assert_eq!(mset(bad).err(), Some(CacheError::Syntax), "{bad}");
        }
        for bad in ["CACHE.MSET", "CACHE.MSET TAGS 1 a", "CACHE.MSET EX 5"] {
            assert_eq!(
                mset(bad).err(),
                Some(CacheError::WrongArity("cache.mset")),
                "{bad}"
            );
        }
        assert_eq!(
            mset("CACHE.MSET ENTRY k v EX 0").err(),
            Some(CacheError::InvalidExpire("cache.mset"))
        );
    }

    fn set(s: &'static str) -> Result<SetArgs<'static>> {
        // The names borrow the arguments: leaked, as the test keeps them to the end.
        let args: &'static [&'static [u8]] =
            s.split(' ').map(str::as_bytes).collect::<Vec<_>>().leak();
        parse_set(args, NOW)
    }

    /// The text-based reading `parse_i64` replaced, as the reference.
    fn parse_i64_by_str(arg: &[u8]) -> Result<i64> {
        let s = std::str::from_utf8(arg).map_err(|_| CacheError::NotInteger)?;
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CacheError::NotInteger);
        }
        if digits.starts_with('0') && (digits.len() > 1 || s.starts_with('-')) {
            return Err(CacheError::NotInteger);
        }
        s.parse::<i64>().map_err(|_| CacheError::NotInteger)
    }

    proptest! {
        #[test]
        fn integers_read_as_the_text_reading_does(
            s in "-?[0-9]{0,21}|[-+ 0-9a]{0,4}",
            n in any::<i64>(),
            raw in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            prop_assert_eq!(parse_i64(s.as_bytes()), parse_i64_by_str(s.as_bytes()));
            let t = n.to_string();
            prop_assert_eq!(parse_i64(t.as_bytes()), Ok(n));
            prop_assert_eq!(parse_i64(&raw), parse_i64_by_str(&raw));
        }

        #[test]
        fn long_integers_with_one_byte_changed_read_as_the_text_reading_does(
            digits in "-?[0-9]{8,20}",
            at in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let mut v = digits.into_bytes();
            let i = at % v.len();
            v[i] = byte;
            prop_assert_eq!(parse_i64(&v), parse_i64_by_str(&v));
        }
    }

    #[test]
    fn integers_follow_redis() {
        assert_eq!(parse_i64(b"42"), Ok(42));
        assert_eq!(parse_i64(b"-7"), Ok(-7));
        assert_eq!(parse_i64(b"-0"), Err(CacheError::NotInteger));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            parse_i64(b"9223372036854775808"),
            Err(CacheError::NotInteger)
        );
        assert_eq!(
            parse_i64(b"-9223372036854775809"),
            Err(CacheError::NotInteger)
        );
        for bad in [
            "",
            "-",
            "+1",
            " 1",
            "1 ",
            "01",
            "1.5",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_i64(bad.as_bytes()),
                Err(CacheError::NotInteger),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn set_minimal_and_full() {
        let s = set("cache.set k v").unwrap();
        assert_eq!(
            (s.expiry, s.condition),
            (Expiry::Default, Condition::Always)
        );
        let s = set("CACHE.SET k v ex 10 nx TAGS 2 a b DEPENDS 1 r META {\"a\":1}").unwrap();
        assert_eq!(s.expiry, Expiry::At(NOW + 10_000));
        assert_eq!(s.condition, Condition::IfMissing);
        assert_eq!(s.tags, vec![&b"a"[..], b"b"]);
        assert_eq!(s.deps, vec![&b"r"[..]]);
        assert_eq!(s.meta, Some("{\"a\":1}"));
        assert_eq!(
            set("cache.set k v PX 5").unwrap().expiry,
            Expiry::At(NOW + 5)
        );
        assert_eq!(
            set("cache.set k v EXAT 5").unwrap().expiry,
            Expiry::At(5000)
        );
        assert_eq!(set("cache.set k v PXAT 5").unwrap().expiry, Expiry::At(5));
        assert_eq!(
            set("cache.set k v KEEPTTL xx").unwrap().expiry,
            Expiry::Keep
        );
        assert!(set("cache.set k v TAGS 0").unwrap().tags.is_empty());
        assert!(matches!(
            set("cache.set k v META  {}"),
            Err(CacheError::MetaNotJson(_))
        ));
        assert_eq!(
            set("cache.set k v META {\"a\":[1,{}]}").unwrap().meta,
            Some("{\"a\":[1,{}]}")
        );
        assert_eq!(
            set("cache.set k v META \"{}\""),
            Err(CacheError::MetaNotObject)
        );
    }

    #[test]
    fn set_rejects_bad_input() {
        let arity = Err(CacheError::WrongArity("cache.set"));
        assert_eq!(set("cache.set k"), arity);
        let syntax = Err(CacheError::Syntax);
        for s in [
            "cache.set k v EX 1 PX 1",
            "cache.set k v EX 1 KEEPTTL",
            "cache.set k v NX XX",
            "cache.set k v TAGS 3 a b",
            "cache.set k v TAGS -1",
            "cache.set k v TAGS",
            "cache.set k v TAGS 1 a TAGS 1 b",
            "cache.set k v DEPENDS 2 a",
            "cache.set k v EX",
            "cache.set k v META",
            "cache.set k v BOGUS",
            "cache.set k v META {} META {}",
        ] {
            assert_eq!(set(s), syntax, "{s}");
        }
        let expire = Err(CacheError::InvalidExpire("cache.set"));
        for s in [
            "cache.set k v EX 0",
            "cache.set k v PX -5",
            "cache.set k v EXAT 0",
            "cache.set k v EX 9223372036854775807",
            "cache.set k v PX 9223372036854775807",
        ] {
            assert_eq!(set(s), expire, "{s}");
        }
        assert_eq!(set("cache.set k v EX ten"), Err(CacheError::NotInteger));
        assert_eq!(set("cache.set k v TAGS x a"), Err(CacheError::NotInteger));
        assert_eq!(
            set("cache.set k v META [1]"),
            Err(CacheError::MetaNotObject)
        );
        assert!(matches!(
            set("cache.set k v META {"),
            Err(CacheError::MetaNotJson(_))
        ));
    }

    fn inv(s: &str) -> Result<InvalidateArgs> {
        parse_invalidate(&a(s), "cache.invalidate", false)
    }

    #[test]
    fn invalidate_selectors_and_options() {
        let i = inv("cache.invalidate DEPTH 2 CONTEXT ctx STRATEGY immediate TAG a b").unwrap();
        assert_eq!(i.depth, Some(2));
        assert_eq!(i.context, Some(b"ctx".to_vec()));
        assert_eq!(
            i.selector,
            Selector::Tags(vec![b"a".to_vec(), b"b".to_vec()])
        );
        assert_eq!(inv("x all").unwrap().selector, Selector::All);
        assert_eq!(
            inv("x KEY DEPTH").unwrap().selector,
            Selector::Keys(vec![b"DEPTH".to_vec()])
        );
        assert_eq!(
            inv("x PATTERN u:*").unwrap().selector,
            Selector::Pattern(b"u:*".to_vec())
        );
        assert_eq!(
            inv("x NAMESPACE u").unwrap().selector,
            Selector::Namespace(b"u".to_vec())
        );
        assert_eq!(
            inv("x DEPENDENTS r").unwrap().selector,
            Selector::Dependents(vec![b"r".to_vec()])
        );
        assert_eq!(inv("x STRATEGY lazy ALL").unwrap().strategy, Strategy::Lazy);
        assert_eq!(inv("x DEPTH 0 KEY k").unwrap().depth, Some(0));
        assert_eq!(
            inv("x STRATEGY soft TAG t").unwrap().strategy,
            Strategy::Soft(None)
        );
        assert_eq!(
            inv("x GRACE 5 STRATEGY SOFT TAG t").unwrap().strategy,
            Strategy::Soft(Some(5))
        );
        assert_eq!(
            inv("x STRATEGY SOFT grace 7 DEPTH 1 ALL").unwrap().strategy,
            Strategy::Soft(Some(7))
        );
        assert_eq!(Strategy::Soft(None).name(), "soft");
    }

    #[test]
    fn grace_belongs_to_soft_and_is_positive() {
        assert_eq!(inv("x GRACE 5 TAG t"), Err(CacheError::Syntax));
        assert_eq!(
            inv("x STRATEGY LAZY GRACE 5 TAG t"),
            Err(CacheError::Syntax)
        );
        assert_eq!(
            inv("x STRATEGY SOFT GRACE 1 GRACE 2 TAG t"),
            Err(CacheError::Syntax)
        );
        assert_eq!(
            inv("x STRATEGY SOFT GRACE 0 TAG t"),
            Err(CacheError::NotPositive)
        );
        assert_eq!(
            inv("x STRATEGY SOFT GRACE -1 TAG t"),
            Err(CacheError::NotPositive)
        );
        assert_eq!(
            inv("x STRATEGY SOFT GRACE x TAG t"),
            Err(CacheError::NotInteger)
        );
        assert_eq!(
            inv("x STRATEGY SOFT GRACE 2147483648 TAG t"),
            Err(CacheError::NotInteger)
        );
        assert_eq!(inv("x STRATEGY SOFT GRACE"), Err(CacheError::Syntax));
        // CACHE.KEYS takes no GRACE.
        assert_eq!(
            parse_invalidate(&a("k GRACE 1 ALL"), "cache.keys", true),
            Err(CacheError::UnknownSelector("GRACE".into()))
        );
    }

    #[test]
    fn fetch_arguments() {
        assert_eq!(
            parse_fetch(&a("f k")),
            Ok(FetchArgs {
                key: b"k",
                lease_ms: None,
                with_token: false,
            })
        );
        assert_eq!(
            parse_fetch(&a("f k withtoken LEASE 9")),
            Ok(FetchArgs {
                key: b"k",
                lease_ms: Some(9),
                with_token: true,
            })
        );
        assert_eq!(
            parse_fetch(&a("f k WITHTOKEN WITHTOKEN")),
            Err(CacheError::Syntax)
        );
        assert_eq!(
            parse_fetch(&a("f k LEASE 1 LEASE 2")),
            Err(CacheError::Syntax)
        );
        assert_eq!(
            parse_fetch(&a("f k LEASE 1 WITHTOKEN x")),
            Err(CacheError::Syntax)
        );
        assert_eq!(
            parse_fetch(&a("f k lease 250")).unwrap().lease_ms,
            Some(250)
        );
        assert_eq!(
            parse_fetch(&a("f")),
            Err(CacheError::WrongArity("cache.fetch"))
        );
        assert_eq!(parse_fetch(&a("f k LEASE 1 x")), Err(CacheError::Syntax));
        assert_eq!(parse_fetch(&a("f k LEASE")), Err(CacheError::Syntax));
        assert_eq!(parse_fetch(&a("f k TTL 5")), Err(CacheError::Syntax));
        assert_eq!(parse_fetch(&a("f k LEASE 0")), Err(CacheError::NotPositive));
        assert_eq!(parse_fetch(&a("f k LEASE ms")), Err(CacheError::NotInteger));
        assert_eq!(
            parse_fetch(&a("f k LEASE 2147483648")),
            Err(CacheError::NotInteger)
        );
    }

    #[test]
    fn invalidate_rejects_bad_input() {
        assert_eq!(inv("x"), Err(CacheError::WrongArity("cache.invalidate")));
        for s in [
            "x DEPTH 1",
            "x TAG",
            "x ALL extra",
            "x PATTERN a b",
            "x NAMESPACE",
            "x KEY",
            "x DEPTH 1 DEPTH 2 ALL",
            "x STRATEGY lazy STRATEGY lazy ALL",
        ] {
            assert_eq!(inv(s), Err(CacheError::Syntax), "{s}");
        }
        assert_eq!(inv("x DEPTH -1 ALL"), Err(CacheError::NegativeDepth));
        assert_eq!(inv("x DEPTH one ALL"), Err(CacheError::NotInteger));
        assert_eq!(
            inv("x EVERYTHING"),
            Err(CacheError::UnknownSelector("EVERYTHING".into()))
        );
        assert_eq!(
            inv("x STRATEGY soon ALL"),
            Err(CacheError::UnknownStrategy("soon".into()))
        );
        // CACHE.KEYS takes DEPTH only.
        assert!(parse_invalidate(&a("k DEPTH 1 ALL"), "cache.keys", true).is_ok());
        assert_eq!(
            parse_invalidate(&a("k CONTEXT c ALL"), "cache.keys", true),
            Err(CacheError::UnknownSelector("CONTEXT".into()))
        );
    }

    #[test]
    fn json_flag_and_count() {
        assert_eq!(parse_json_flag(&a("s"), "cache.stats"), Ok(false));
        assert_eq!(parse_json_flag(&a("s json"), "cache.stats"), Ok(true));
        assert_eq!(
            parse_json_flag(&a("s xml"), "cache.stats"),
            Err(CacheError::Syntax)
        );
        assert_eq!(
            parse_json_flag(&a("s json x"), "cache.stats"),
            Err(CacheError::WrongArity("cache.stats"))
        );
        assert_eq!(parse_count(&a("e"), "cache.events"), Ok(None));
        assert_eq!(parse_count(&a("e count 5"), "cache.events"), Ok(Some(5)));
        assert_eq!(
            parse_count(&a("e COUNT 0"), "cache.events"),
            Err(CacheError::NotPositive)
        );
        assert_eq!(
            parse_count(&a("e COUNT x"), "cache.events"),
            Err(CacheError::NotInteger)
        );
        assert_eq!(
            parse_count(&a("e LIMIT 5"), "cache.events"),
            Err(CacheError::Syntax)
        );
        assert_eq!(
            parse_count(&a("e COUNT"), "cache.events"),
            Err(CacheError::Syntax)
        );
        assert_eq!(
            parse_count(&a("e COUNT 1 2"), "cache.events"),
            Err(CacheError::WrongArity("cache.events"))
        );
    }

    #[test]
    fn pending_replication_forms_only_when_replayed() {
        assert_eq!(parse_pending(&a("p"), false), Ok(PendingArgs::List));
        assert_eq!(parse_pending(&a("p flush"), false), Ok(PendingArgs::Flush));
        assert_eq!(
            parse_pending(&a("p DONE 3"), true),
            Ok(PendingArgs::Done(3))
        );
        assert_eq!(
            parse_pending(&a("p COALESCE 4"), true),
            Ok(PendingArgs::Coalesce(4))
        );
        assert_eq!(
            parse_pending(&a("p ADD xyz"), true),
            Ok(PendingArgs::Add(b"xyz".to_vec()))
        );
        assert_eq!(
            parse_pending(&a("p DONE 3"), false),
            Err(CacheError::Message(
                "ERR CACHE.PENDING DONE is internal: only the master and the AOF send it".into()
            ))
        );
        assert_eq!(
            parse_pending(&a("p stale"), false),
            Err(CacheError::Message(
                "ERR CACHE.PENDING STALE is internal: only the master and the AOF send it".into()
            ))
        );
        assert_eq!(
            parse_pending(&a("p DONE x y"), true),
            Err(CacheError::WrongArity("cache.pending"))
        );
        assert_eq!(
            parse_pending(&a("p DONE -3"), true),
            Err(CacheError::NotInteger)
        );
        assert_eq!(
            parse_pending(&a("p STALE 100 a b"), true),
            Ok(PendingArgs::Stale(100, vec![b"a".to_vec(), b"b".to_vec()]))
        );
        assert!(matches!(
            parse_pending(&a("p STALE 100 a"), false),
            Err(CacheError::Message(m)) if m.contains("is internal")
        ));
        assert!(matches!(
            parse_pending(&a("p nope"), false),
            Err(CacheError::UnknownSubcommand(..))
        ));
        assert_eq!(
            parse_pending(&a("p FLUSH x"), false),
            Err(CacheError::WrongArity("cache.pending"))
        );
    }

    #[test]
    fn tags_and_debug() {
        assert_eq!(
            parse_tags(&a("t")).unwrap(),
            TagsArgs {
                pattern: None,
                count: None
            }
        );
        let t = parse_tags(&a("t COUNT 3 MATCH u*")).unwrap();
        assert_eq!((t.pattern, t.count), (Some(b"u*".to_vec()), Some(3)));
        assert_eq!(parse_tags(&a("t COUNT 0")), Err(CacheError::NotPositive));
        assert_eq!(parse_tags(&a("t COUNT")), Err(CacheError::Syntax));
        assert_eq!(parse_tags(&a("t MATCH a MATCH b")), Err(CacheError::Syntax));
        assert_eq!(parse_debug(&a("d verify")), Ok(DebugArgs::Verify));
        assert_eq!(parse_debug(&a("d Rebuild")), Ok(DebugArgs::Rebuild));
        assert_eq!(
            parse_debug(&a("d rebuild now")),
            Err(CacheError::WrongArity("cache.debug"))
        );
        assert_eq!(
            parse_debug(&a("d verify x")),
            Err(CacheError::WrongArity("cache.debug"))
        );
        assert!(matches!(
            parse_debug(&a("d nope")),
            Err(CacheError::UnknownSubcommand(..))
        ));
    }
}
