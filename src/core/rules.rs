//! The rules engine (seed 002): invalidation rules fired by reported writes, and relationships
//! between data types that carry a write on one type over to others.
//!
//! * `CACHE.RULE SET name ON type [OPS op[,op...]] [MATCH glob] INVALIDATE count template
//!   [template ...] [STRATEGY s] [PRIORITY n]`, `CACHE.RULE DEL name`, `CACHE.RULE LIST`,
//!   `CACHE.RULE HELP`.
//! * `CACHE.RELATE source target [target ...] [DEPTH n] [BIDIRECTIONAL]`,
//!   `CACHE.RELATE DEL source target`, `CACHE.RELATE LIST`, `CACHE.RELATE HELP`.
//! * `CACHE.WRITE type id [OP create|update|delete] [CONTEXT text]`: [`Rules::plan`] says which
//!   tags to invalidate, in which order and with which strategy; the shell applies the plan and
//!   reports each rule's effect back with [`Rules::record`].
//!
//! This module is pure: no server calls, no clock (times come in as `now_ms`). Every parse
//! function validates fully and returns the complete Redis-style error text (`ERR ...`) as a
//! `String`; a rejected command changes nothing.
//!
//! Decisions:
//! * Names, types and ids are binary-safe byte strings. Rule names and types are 1..=1024 bytes
//!   (an empty one is rejected); ids may be any bytes, including empty.
//! * Templates: `{type}`, `{id}` and `{op}` (exactly these, lowercase) are replaced by the type,
//!   the id and the operation name (`create`, `update`, `delete`); `{{` and `}}` are a literal `{`
//!   and `}` (as in Rust's `format!`). Any other `{name}`, an unclosed `{` and a lone `}` are
//!   errors. A template is 1..=4096 bytes; a rule has 1..=256 templates.
//! * OPS takes a comma-separated list (case-insensitive, duplicates collapse); without OPS a rule
//!   fires on every operation. `MATCH` is a Redis glob on the id. `PRIORITY` is 0..=2147483647
//!   (default 0), `STRATEGY` IMMEDIATE (default), LAZY or BATCHED. The options of `SET` come in
//!   any order, each at most once. `SET` replaces a rule of the same name whole; its counters
//!   start again from zero.
//! * Relations are keyed by (source, target); `RELATE` with an existing pair replaces its depth
//!   and direction. `DEPTH` is 1..=4294967295 (default 1); 0 is rejected (the relation would
//!   never apply). A type can't be related to itself. Because the options come after a variable
//!   number of targets, a target can't be named `DEPTH` or `BIDIRECTIONAL` (any case); and
//!   because `DEL`, `LIST` and `HELP` are subcommands, a type with one of those names can't be a
//!   relation's source. `RELATE DEL b a` does not remove a bidirectional relation `a <-> b`.
//! * Cascade: a write on type `S` id `X` is a write on every related type with the same id `X` and
//!   the same operation. A relation with `DEPTH d` carries a write at most `d` hops: following it
//!   leaves a budget of `d - 1` further hops, and every relation followed later also bounds the
//!   budget (`min(budget, depth) - 1`). Each type is visited once, with the largest budget any
//!   path gives it, so cycles and diamonds terminate. A bidirectional relation is also followed
//!   from target to source.
//! * Plan order: one IMMEDIATE step with the implicit tags `type:id` of the written type, then of
//!   every related type reached (in byte order of the type); then one step per matching rule of
//!   all reached types, by descending priority, ties by rule name (a rule belongs to one type and
//!   the id is the same everywhere, so a rule fires at most once per write). Duplicate tags inside
//!   one step are dropped.
//! * Limits: 10 000 rules, 10 000 relations.
//! * Persistence: [`Rules::encode`]/[`Rules::decode`] (versioned binary, counters included). The
//!   tests also render the registry as the commands that recreate it (`to_commands`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use ahash::AHashSet;

use crate::core::glob::Glob;
use crate::core::parse::parse_i64;
use crate::error::{CacheError, Result};

/// Results of this module.
pub type RuleResult<T> = std::result::Result<T, RuleError>;

/// What the rules engine refuses; `Display` is the reply, worded as Redis words its errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// One of the module's common errors (arity, syntax, integers, DEPTH's sign, subcommand).
    Cache(CacheError),
    /// An option given twice (`ERR OPS given more than once`).
    Twice(&'static str),
    Empty(&'static str),
    /// A name or text past its limit in bytes.
    TooLong(&'static str, usize),
    /// Rules or relations or templates past their count.
    TooMany(&'static str, usize),
    UnknownOp(String),
    /// A template's `{` without its `}`, its `}` alone, or a placeholder it does not know: the
    /// template, and the placeholder.
    Unclosed(String),
    Unmatched(String),
    UnknownPlaceholder(String, String),
    NoOps,
    NoTemplate,
    NegativePriority,
    PriorityRange,
    DepthZero,
    DepthRange,
    SelfRelation(String),
    SourceIsSubcommand(String),
    TargetIsOption(String),
    NoTarget,
    PatternTooComplex {
        widest: usize,
        most: usize,
    },
    NeedsOn,
    NeedsInvalidate,
    /// INVALIDATE's count against the templates given (and the word after them, when one is).
    CountMismatch(i64, Option<String>),
    /// Stored rules that do not decode: what was wrong.
    Data(String),
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use RuleError::*;
        match self {
            Cache(e) => write!(f, "{e}"),
            Twice(option) => write!(f, "ERR {option} given more than once"),
            Empty(what) => write!(f, "ERR {what} can't be empty"),
            TooLong(what, limit) => write!(f, "ERR {what} is too long (limit {limit} bytes)"),
            TooMany(what, limit) => write!(f, "ERR too many {what} (limit {limit})"),
            UnknownOp(op) => write!(
                f,
                "ERR unknown operation '{op}', expected create, update or delete"
            ),
            Unclosed(t) => write!(
                f,
                "ERR unclosed '{{' in template '{t}' (write '{{{{' for a literal '{{')"
            ),
            Unmatched(t) => write!(
                f,
                "ERR unmatched '}}' in template '{t}' (write '}}}}' for a literal '}}')"
            ),
            UnknownPlaceholder(p, t) => write!(
                f,
                "ERR unknown placeholder '{{{p}}}' in template '{t}', expected {{type}}, {{id}} or {{op}}"
            ),
            NoOps => write!(f, "ERR OPS needs at least one operation"),
            NoTemplate => write!(f, "ERR INVALIDATE needs at least one template"),
            NegativePriority => write!(f, "ERR PRIORITY can't be negative"),
            PriorityRange => write!(
                f,
                "ERR PRIORITY is out of range, must be between 0 and {MAX_PRIORITY}"
            ),
            DepthZero => write!(f, "ERR DEPTH must be at least 1"),
            DepthRange => write!(
                f,
                "ERR DEPTH is out of range, must be between 1 and {}",
                u32::MAX
            ),
            SelfRelation(t) => write!(f, "ERR a type can't be related to itself ('{t}')"),
            SourceIsSubcommand(t) => write!(
                f,
                "ERR '{t}' is a subcommand of CACHE.RELATE and can't be a relation's source"
            ),
            TargetIsOption(t) => write!(
                f,
                "ERR '{t}' is an option of CACHE.RELATE and can't be a relation's target"
            ),
            NoTarget => write!(f, "ERR CACHE.RELATE needs at least one target"),
            PatternTooComplex { widest, most } => write!(
                f,
                "ERR pattern too complex: {widest} bytes between two stars with ? or [...] inside, the limit is {most}"
            ),
            NeedsOn => write!(f, "ERR CACHE.RULE SET needs ON <type>"),
            NeedsInvalidate => write!(
                f,
                "ERR CACHE.RULE SET needs INVALIDATE <count> <template> [<template> ...]"
            ),
            CountMismatch(n, after) => {
                write!(
                    f,
                    "ERR INVALIDATE count {n} doesn't match the number of templates given"
                )?;
                match after {
                    Some(w) => write!(f, " (or '{w}' is not an option)"),
                    None => Ok(()),
                }
            }
            Data(why) => write!(f, "ERR invalid tagcache rules data: {why}"),
        }
    }
}

impl From<CacheError> for RuleError {
    fn from(e: CacheError) -> RuleError {
        RuleError::Cache(e)
    }
}

impl From<RuleError> for CacheError {
    fn from(e: RuleError) -> CacheError {
        match e {
            RuleError::Cache(e) => e,
            other => CacheError::Rule(Box::new(other)),
        }
    }
}

pub const MAX_RULES: usize = 10_000;
pub const MAX_RELATIONS: usize = 10_000;
/// Rule names and types.
pub const MAX_NAME_LEN: usize = 1024;
pub const MAX_TEMPLATE_LEN: usize = 4096;
pub const MAX_PATTERN_LEN: usize = 4096;
pub const MAX_TEMPLATES: usize = 256;
pub const MAX_PRIORITY: i64 = i32::MAX as i64;

const RULE_CMD: &str = "cache.rule";
const RELATE_CMD: &str = "cache.relate";
const WRITE_CMD: &str = "cache.write";

const MAGIC: &[u8; 4] = b"TCRL";
const VERSION: u8 = 1;

pub const RULE_HELP: &[&str] = &[
    "CACHE.RULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "SET <name> ON <type> [OPS <op>[,<op>...]] [MATCH <glob>] INVALIDATE <count> <template> [<template> ...] [STRATEGY IMMEDIATE|LAZY|BATCHED] [PRIORITY <n>]",
    "    Create or replace a rule: a write on <type> (only for these operations: create, update,",
    "    delete; only for ids matching <glob>) invalidates the tags rendered from the templates.",
    "    Placeholders: {type}, {id}, {op}; {{ and }} are literal braces.",
    "DEL <name>",
    "    Delete a rule. Returns 1 if it existed, else 0.",
    "LIST",
    "    List the rules, highest priority first, with their counters.",
    "HELP",
    "    Print this help.",
];

pub const RELATE_HELP: &[&str] = &[
    "CACHE.RELATE <source> <target> [<target> ...] [DEPTH <n>] [BIDIRECTIONAL]",
    "    A write on <source> id X is also a write on each <target> id X, carried up to <n> hops",
    "    (default 1). BIDIRECTIONAL also carries writes from <target> to <source>.",
    "CACHE.RELATE DEL <source> <target>",
    "    Delete a relation. Returns 1 if it existed, else 0.",
    "CACHE.RELATE LIST",
    "    List the relations.",
    "CACHE.RELATE HELP",
    "    Print this help.",
];

fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// A user-supplied word for an error message: lossy UTF-8, no line breaks, bounded length.
fn word(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(64)
        .collect()
}

fn int(arg: &[u8]) -> RuleResult<i64> {
    let n: Result<i64> = parse_i64(arg);
    Ok(n?)
}

fn syntax() -> RuleError {
    RuleError::Cache(CacheError::Syntax)
}

fn arity(cmd: &'static str) -> RuleError {
    RuleError::Cache(CacheError::WrongArity(cmd))
}

fn twice(option: &'static str) -> RuleError {
    RuleError::Twice(option)
}

fn check_name(what: &'static str, name: &[u8]) -> RuleResult<()> {
    if name.is_empty() {
        Err(RuleError::Empty(what))
    } else if name.len() > MAX_NAME_LEN {
        Err(RuleError::TooLong(what, MAX_NAME_LEN))
    } else {
        Ok(())
    }
}

/// The operation a write reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Create, Op::Update, Op::Delete];

    /// `create`, `update` or `delete`, case-insensitive.
    pub fn parse(arg: &[u8]) -> RuleResult<Op> {
        Op::ALL
            .into_iter()
            .find(|op| eq(arg, op.name()))
            .ok_or_else(|| RuleError::UnknownOp(word(arg)))
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Op::Create => 1,
            Op::Update => 2,
            Op::Delete => 4,
        }
    }
}

/// `op[,op...]`: a non-empty list, returned sorted (create, update, delete) without duplicates.
pub fn parse_ops(arg: &[u8]) -> RuleResult<Vec<Op>> {
    let mut ops = arg
        .split(|&b| b == b',')
        .map(Op::parse)
        .collect::<RuleResult<Vec<Op>>>()?;
    ops.sort_unstable();
    ops.dedup();
    Ok(ops)
}

/// How the tags of a rule are invalidated (the shell decides what each means).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RuleStrategy {
    #[default]
    Immediate,
    Lazy,
    Batched,
}

impl RuleStrategy {
    pub fn parse(arg: &[u8]) -> RuleResult<RuleStrategy> {
        [
            RuleStrategy::Immediate,
            RuleStrategy::Lazy,
            RuleStrategy::Batched,
        ]
        .into_iter()
        .find(|s| eq(arg, s.name()))
        .ok_or_else(|| CacheError::UnknownRuleStrategy(word(arg)).into())
    }

    /// Lowercase, as CACHE.EVENTS shows strategies.
    pub fn name(self) -> &'static str {
        match self {
            RuleStrategy::Immediate => "immediate",
            RuleStrategy::Lazy => "lazy",
            RuleStrategy::Batched => "batched",
        }
    }

    fn code(self) -> u8 {
        match self {
            RuleStrategy::Immediate => 0,
            RuleStrategy::Lazy => 1,
            RuleStrategy::Batched => 2,
        }
    }

    fn from_code(code: u8) -> Option<RuleStrategy> {
        match code {
            0 => Some(RuleStrategy::Immediate),
            1 => Some(RuleStrategy::Lazy),
            2 => Some(RuleStrategy::Batched),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Type,
    Id,
    Op,
}

/// A parsed tag template: literal bytes and the placeholders `{type}`, `{id}`, `{op}`;
/// `{{` and `}}` stand for literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: Vec<u8>,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(src: &[u8]) -> RuleResult<Template> {
        if src.is_empty() {
            return Err(RuleError::Empty("template"));
        }
        if src.len() > MAX_TEMPLATE_LEN {
            return Err(RuleError::TooLong("template", MAX_TEMPLATE_LEN));
        }
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while let Some(&b) = src.get(i) {
            let next = src.get(i + 1).copied();
            match b {
                b'{' if next == Some(b'{') => {
                    literal.push(b'{');
                    i += 2;
                }
                b'}' if next == Some(b'}') => {
                    literal.push(b'}');
                    i += 2;
                }
                b'{' => {
                    let rest = &src[i + 1..];
                    let Some(len) = rest.iter().position(|&c| c == b'}') else {
                        return Err(RuleError::Unclosed(word(src)));
                    };
                    let part = match &rest[..len] {
                        b"type" => Part::Type,
                        b"id" => Part::Id,
                        b"op" => Part::Op,
                        other => return Err(RuleError::UnknownPlaceholder(word(other), word(src))),
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    i += len + 2;
                }
                b'}' => return Err(RuleError::Unmatched(word(src))),
                _ => {
                    literal.push(b);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            source: src.to_vec(),
            parts,
        })
    }

    pub fn render(&self, ty: &[u8], id: &[u8], op: Op) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.source.len() + id.len());
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Type => out.extend_from_slice(ty),
                Part::Id => out.extend_from_slice(id),
                Part::Op => out.extend_from_slice(op.name().as_bytes()),
            }
        }
        out
    }

    /// The template as written.
    #[cfg(test)]
    pub fn source(&self) -> &[u8] {
        &self.source
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub executions: u64,
    pub entries_invalidated: u64,
    pub last_run_ms: Option<i64>,
}

/// An invalidation rule: a write on `on_type` invalidates the rendered templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: Vec<u8>,
    pub on_type: Vec<u8>,
    /// None: every operation.
    pub ops: Option<Vec<Op>>,
    /// A glob on the id.
    pub pattern: Option<Vec<u8>>,
    /// `pattern` compiled once (CACHE.WRITE matches every rule of the type against the id).
    pub glob: Option<Box<Glob>>,
    pub templates: Vec<Template>,
    pub strategy: RuleStrategy,
    pub priority: i64,
    pub stats: RuleStats,
}

impl Rule {
    /// Whether a write of `op` on an id fires this rule (the type is checked by the caller).
    pub fn applies(&self, id: &[u8], op: Op) -> bool {
        self.ops.as_ref().is_none_or(|ops| ops.contains(&op))
            && self.glob.as_ref().is_none_or(|g| g.matches(id))
    }

    /// The tags of this rule for a write, duplicates removed (first occurrence kept).
    pub fn render(&self, ty: &[u8], id: &[u8], op: Op) -> Vec<Vec<u8>> {
        let mut seen = AHashSet::with_capacity(self.templates.len());
        let mut out = Vec::with_capacity(self.templates.len());
        for t in &self.templates {
            let tag = t.render(ty, id, op);
            if seen.insert(tag.clone()) {
                out.push(tag);
            }
        }
        out
    }

    /// Normalises OPS and checks every limit (the parser guarantees them; hand-made rules and
    /// decoded data are checked again).
    fn validate(&mut self) -> RuleResult<()> {
        check_name("rule name", &self.name)?;
        check_name("type", &self.on_type)?;
        if let Some(ops) = &mut self.ops {
            ops.sort_unstable();
            ops.dedup();
            if ops.is_empty() {
                return Err(RuleError::NoOps);
            }
        }
        if let Some(p) = &self.pattern {
            check_pattern(p)?;
        }
        check_template_count(self.templates.len())?;
        check_priority(self.priority)?;
        Ok(())
    }

    fn row(&self) -> Row {
        let ops = match &self.ops {
            None => vec![b"*".to_vec()],
            Some(ops) => ops.iter().map(|o| o.name().as_bytes().to_vec()).collect(),
        };
        vec![
            ("name", RowValue::Bytes(self.name.clone())),
            ("on", RowValue::Bytes(self.on_type.clone())),
            ("ops", RowValue::List(ops)),
            (
                "match",
                self.pattern
                    .as_ref()
                    .map_or(RowValue::Nil, |p| RowValue::Bytes(p.clone())),
            ),
            (
                "invalidate",
                RowValue::List(self.templates.iter().map(|t| t.source.clone()).collect()),
            ),
            (
                "strategy",
                RowValue::Bytes(self.strategy.name().as_bytes().to_vec()),
            ),
            ("priority", RowValue::Int(self.priority)),
            ("executions", RowValue::Int(sat(self.stats.executions))),
            (
                "entries_invalidated",
                RowValue::Int(sat(self.stats.entries_invalidated)),
            ),
            (
                "last_run_ms",
                RowValue::Int(self.stats.last_run_ms.unwrap_or(-1)),
            ),
        ]
    }

    #[cfg(test)]
    fn to_command(&self) -> Vec<Vec<u8>> {
        let mut argv: Vec<Vec<u8>> = vec![
            b"CACHE.RULE".to_vec(),
            b"SET".to_vec(),
            self.name.clone(),
            b"ON".to_vec(),
            self.on_type.clone(),
        ];
        if let Some(ops) = &self.ops {
            argv.push(b"OPS".to_vec());
            let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
            argv.push(names.join(",").into_bytes());
        }
        if let Some(p) = &self.pattern {
            argv.push(b"MATCH".to_vec());
            argv.push(p.clone());
        }
        argv.push(b"INVALIDATE".to_vec());
        argv.push(self.templates.len().to_string().into_bytes());
        argv.extend(self.templates.iter().map(|t| t.source.clone()));
        argv.push(b"STRATEGY".to_vec());
        argv.push(self.strategy.name().to_ascii_uppercase().into_bytes());
        argv.push(b"PRIORITY".to_vec());
        argv.push(self.priority.to_string().into_bytes());
        argv
    }
}

fn sat(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn check_pattern(p: &[u8]) -> RuleResult<()> {
    if p.len() > MAX_PATTERN_LEN {
        Err(RuleError::TooLong("MATCH pattern", MAX_PATTERN_LEN))
    } else {
        Ok(())
    }
}

/// RULE SET only (a rule already stored, or decoded, is not refused for it): the pattern's
/// cost per byte of id stays small (see `glob::widest_search`).
fn check_pattern_complexity(p: &[u8]) -> RuleResult<()> {
    let widest = crate::core::glob::widest_search(p);
    let most = crate::core::glob::MAX_SEARCHED_WILDCARD_PIECE;
    if widest > most {
        Err(RuleError::PatternTooComplex { widest, most })
    } else {
        Ok(())
    }
}

fn check_template_count(n: usize) -> RuleResult<()> {
    if n == 0 {
        Err(RuleError::NoTemplate)
    } else if n > MAX_TEMPLATES {
        Err(RuleError::TooMany("templates", MAX_TEMPLATES))
    } else {
        Ok(())
    }
}

fn check_priority(p: i64) -> RuleResult<()> {
    if p < 0 {
        Err(RuleError::NegativePriority)
    } else if p > MAX_PRIORITY {
        Err(RuleError::PriorityRange)
    } else {
        Ok(())
    }
}

fn check_depth(d: i64) -> RuleResult<u32> {
    if d < 0 {
        return Err(RuleError::Cache(CacheError::NegativeDepth));
    }
    if d == 0 {
        return Err(RuleError::DepthZero);
    }
    u32::try_from(d).map_err(|_| RuleError::DepthRange)
}

/// A write on `source` id X is also a write on `target` id X (and, when bidirectional, the
/// other way round), carried up to `depth` hops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub source: Vec<u8>,
    pub target: Vec<u8>,
    pub depth: u32,
    pub bidirectional: bool,
}

fn is_relate_option(arg: &[u8]) -> bool {
    eq(arg, "DEPTH") || eq(arg, "BIDIRECTIONAL")
}

impl Relation {
    fn validate(&self) -> RuleResult<()> {
        check_name("type", &self.source)?;
        check_name("type", &self.target)?;
        if self.source == self.target {
            return Err(RuleError::SelfRelation(word(&self.source)));
        }
        if ["DEL", "LIST", "HELP"].iter().any(|w| eq(&self.source, w)) {
            return Err(RuleError::SourceIsSubcommand(word(&self.source)));
        }
        if is_relate_option(&self.target) {
            return Err(RuleError::TargetIsOption(word(&self.target)));
        }
        if self.depth == 0 {
            return Err(RuleError::DepthZero);
        }
        Ok(())
    }

    fn row(&self) -> Row {
        vec![
            ("source", RowValue::Bytes(self.source.clone())),
            ("target", RowValue::Bytes(self.target.clone())),
            ("depth", RowValue::Int(i64::from(self.depth))),
            (
                "bidirectional",
                RowValue::Int(i64::from(self.bidirectional)),
            ),
        ]
    }

    #[cfg(test)]
    fn to_command(&self) -> Vec<Vec<u8>> {
        let mut argv = vec![
            b"CACHE.RELATE".to_vec(),
            self.source.clone(),
            self.target.clone(),
            b"DEPTH".to_vec(),
            self.depth.to_string().into_bytes(),
        ];
        if self.bidirectional {
            argv.push(b"BIDIRECTIONAL".to_vec());
        }
        argv
    }
}

/// A parsed `CACHE.RULE` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleCommand {
    Set(Rule),
    Del(Vec<u8>),
    List,
    Help,
}

/// A parsed `CACHE.RELATE` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelateCommand {
    /// One relation per distinct target, all with the same depth and direction.
    Set(Vec<Relation>),
    Del {
        source: Vec<u8>,
        target: Vec<u8>,
    },
    List,
    Help,
}

/// A parsed `CACHE.WRITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub ty: Vec<u8>,
    pub id: Vec<u8>,
    pub op: Op,
    pub context: Option<Vec<u8>>,
}

/// One step of a write's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// None for the implicit `type:id` tags.
    pub rule: Option<Vec<u8>>,
    pub strategy: RuleStrategy,
    pub tags: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowValue {
    Bytes(Vec<u8>),
    Int(i64),
    Nil,
    List(Vec<Vec<u8>>),
}

/// One map of a LIST reply, fields in display order.
pub type Row = Vec<(&'static str, RowValue)>;

/// What the shell replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleReply {
    Ok,
    Int(i64),
    /// LIST: an array of maps.
    Rows(Vec<Row>),
    /// HELP: an array of status lines.
    Help(&'static [&'static str]),
    /// The command was rejected and changed nothing; the full error text.
    Error(RuleError),
}

pub type RelateReply = RuleReply;

/// The registry: one per server (rules are not per database).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// By name.
    rules: BTreeMap<Vec<u8>, Rule>,
    /// (type, rule name) for every rule.
    by_type: BTreeSet<(Vec<u8>, Vec<u8>)>,
    /// By (source, target).
    relations: BTreeMap<(Vec<u8>, Vec<u8>), Relation>,
    /// (target, source) of every bidirectional relation.
    reverse: BTreeSet<(Vec<u8>, Vec<u8>)>,
}

/// The entries of an ordered set of pairs whose first element is `first`.
fn with_first<'a>(
    set: &'a BTreeSet<(Vec<u8>, Vec<u8>)>,
    first: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    set.range((first.to_vec(), Vec::new())..)
        .take_while(move |(a, _)| a.as_slice() == first)
        .map(|(_, b)| b.as_slice())
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.relations.is_empty()
    }

    /// The heap the rules and relations take: an estimate, walking them (at most 10 000 of
    /// each, see the limits), with B-tree nodes about two thirds full.
    pub fn heap_bytes(&self) -> u64 {
        const NODE: usize = 3; // a share of 3/2 of each element, in halves
        let v = |b: &Vec<u8>| b.capacity();
        let rules: usize = self
            .rules
            .iter()
            .map(|(name, r)| {
                let templates: usize = r
                    .templates
                    .iter()
                    .map(|t| {
                        2 * t.source.capacity() + t.parts.capacity() * std::mem::size_of::<Part>()
                    })
                    .sum();
                v(name)
                    + v(&r.name)
                    + v(&r.on_type)
                    + r.pattern.as_ref().map_or(0, v)
                    + r.glob
                        .as_ref()
                        .map_or(0, |g| g.heap_bytes() + std::mem::size_of::<Glob>())
                    + r.ops
                        .as_ref()
                        .map_or(0, |o| o.capacity() * std::mem::size_of::<Op>())
                    + r.templates.capacity() * std::mem::size_of::<Template>()
                    + templates
                    + (24 + std::mem::size_of::<Rule>()) * NODE / 2
            })
            .sum();
        let pairs = |set: &BTreeSet<(Vec<u8>, Vec<u8>)>| -> usize {
            set.iter().map(|(a, b)| v(a) + v(b) + 48 * NODE / 2).sum()
        };
        let relations: usize = self
            .relations
            .iter()
            .map(|((a, b), r)| {
                v(a) + v(b)
                    + v(&r.source)
                    + v(&r.target)
                    + (48 + std::mem::size_of::<Relation>()) * NODE / 2
            })
            .sum();
        (rules + pairs(&self.by_type) + relations + pairs(&self.reverse)) as u64
    }

    #[cfg(test)]
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    #[cfg(test)]
    pub fn relation_count(&self) -> usize {
        self.relations.len()
    }

    #[cfg(test)]
    pub fn rule(&self, name: &[u8]) -> Option<&Rule> {
        self.rules.get(name)
    }

    #[cfg(test)]
    pub fn relation(&self, source: &[u8], target: &[u8]) -> Option<&Relation> {
        self.relations.get(&(source.to_vec(), target.to_vec()))
    }

    /// Rules by name.
    #[cfg(test)]
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values()
    }

    /// Relations by (source, target).
    #[cfg(test)]
    pub fn relations(&self) -> impl Iterator<Item = &Relation> {
        self.relations.values()
    }

    /// Parses CACHE.RULE (`args[0]` = "CACHE.RULE", `args[1]` = SET|DEL|LIST|HELP) into a
    /// command; changes nothing.
    pub fn parse_rule_command(args: &[&[u8]]) -> RuleResult<RuleCommand> {
        let Some(&sub) = args.get(1) else {
            return Err(arity(RULE_CMD));
        };
        let exact = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(arity(RULE_CMD))
            }
        };
        if eq(sub, "SET") {
            parse_rule_set(args).map(RuleCommand::Set)
        } else if eq(sub, "DEL") {
            exact(3)?;
            Ok(RuleCommand::Del(args[2].to_vec()))
        } else if eq(sub, "LIST") {
            exact(2)?;
            Ok(RuleCommand::List)
        } else if eq(sub, "HELP") {
            exact(2)?;
            Ok(RuleCommand::Help)
        } else {
            Err(CacheError::UnknownSubcommand(word(sub), "CACHE.RULE").into())
        }
    }

    /// `CACHE.RELATE source target [target ...] [DEPTH n] [BIDIRECTIONAL]`,
    /// `CACHE.RELATE DEL source target`, `CACHE.RELATE LIST`, `CACHE.RELATE HELP`.
    pub fn parse_relate_command(args: &[&[u8]]) -> RuleResult<RelateCommand> {
        let Some(&first) = args.get(1) else {
            return Err(arity(RELATE_CMD));
        };
        let exact = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(arity(RELATE_CMD))
            }
        };
        if eq(first, "DEL") {
            exact(4)?;
            return Ok(RelateCommand::Del {
                source: args[2].to_vec(),
                target: args[3].to_vec(),
            });
        }
        if eq(first, "LIST") {
            exact(2)?;
            return Ok(RelateCommand::List);
        }
        if eq(first, "HELP") {
            exact(2)?;
            return Ok(RelateCommand::Help);
        }
        if args.len() < 3 {
            return Err(arity(RELATE_CMD));
        }
        let source = first;
        let mut i = 2;
        let mut targets: Vec<&[u8]> = Vec::new();
        while let Some(&t) = args.get(i) {
            if is_relate_option(t) {
                break;
            }
            if !targets.contains(&t) {
                targets.push(t);
            }
            i += 1;
        }
        if targets.is_empty() {
            return Err(RuleError::NoTarget);
        }
        let mut depth = None;
        let mut bidirectional = false;
        while let Some(&opt) = args.get(i) {
            if eq(opt, "DEPTH") {
                if depth.is_some() {
                    return Err(twice("DEPTH"));
                }
                let n = args.get(i + 1).ok_or_else(syntax)?;
                depth = Some(check_depth(int(n)?)?);
                i += 2;
            } else if eq(opt, "BIDIRECTIONAL") {
                if bidirectional {
                    return Err(twice("BIDIRECTIONAL"));
                }
                bidirectional = true;
                i += 1;
            } else {
                return Err(syntax());
            }
        }
        let depth = depth.unwrap_or(1);
        let relations: Vec<Relation> = targets
            .into_iter()
            .map(|t| Relation {
                source: source.to_vec(),
                target: t.to_vec(),
                depth,
                bidirectional,
            })
            .collect();
        for r in &relations {
            r.validate()?;
        }
        Ok(RelateCommand::Set(relations))
    }

    /// `CACHE.WRITE type id [OP create|update|delete] [CONTEXT text]`.
    pub fn parse_write(args: &[&[u8]]) -> RuleResult<Write> {
        if args.len() < 3 {
            return Err(arity(WRITE_CMD));
        }
        if args[1].is_empty() {
            return Err(RuleError::Empty("type"));
        }
        let mut op = None;
        let mut context = None;
        let mut i = 3;
        while let Some(&opt) = args.get(i) {
            let value = args.get(i + 1).copied().ok_or_else(syntax)?;
            if eq(opt, "OP") {
                if op.is_some() {
                    return Err(twice("OP"));
                }
                op = Some(Op::parse(value)?);
            } else if eq(opt, "CONTEXT") {
                if context.is_some() {
                    return Err(twice("CONTEXT"));
                }
                context = Some(value.to_vec());
            } else {
                return Err(syntax());
            }
            i += 2;
        }
        Ok(Write {
            ty: args[1].to_vec(),
            id: args[2].to_vec(),
            op: op.unwrap_or(Op::Update),
            context,
        })
    }

    /// SET replaces by name (counters restart); DEL replies 1/0; LIST gives the rules by
    /// descending priority, then name; a rejected SET replies `Error` and changes nothing.
    pub fn apply_rule(&mut self, cmd: RuleCommand) -> RuleReply {
        match cmd {
            RuleCommand::Set(mut rule) => {
                rule.stats = RuleStats::default();
                match self.insert_rule(rule) {
                    Ok(()) => RuleReply::Ok,
                    Err(e) => RuleReply::Error(e),
                }
            }
            RuleCommand::Del(name) => RuleReply::Int(i64::from(self.remove_rule(&name))),
            RuleCommand::List => {
                let mut rules: Vec<&Rule> = self.rules.values().collect();
                rules.sort_by(|a, b| {
                    (Reverse(a.priority), &a.name).cmp(&(Reverse(b.priority), &b.name))
                });
                RuleReply::Rows(rules.into_iter().map(Rule::row).collect())
            }
            RuleCommand::Help => RuleReply::Help(RULE_HELP),
        }
    }

    /// SET adds or replaces each (source, target); DEL replies 1/0; LIST gives the relations by
    /// source, then target; a rejected SET replies `Error` and changes nothing.
    pub fn apply_relate(&mut self, cmd: RelateCommand) -> RelateReply {
        match cmd {
            RelateCommand::Set(relations) => match self.insert_relations(relations) {
                Ok(()) => RuleReply::Ok,
                Err(e) => RuleReply::Error(e),
            },
            RelateCommand::Del { source, target } => {
                RuleReply::Int(i64::from(self.remove_relation(source, target)))
            }
            RelateCommand::List => {
                RuleReply::Rows(self.relations.values().map(Relation::row).collect())
            }
            RelateCommand::Help => RuleReply::Help(RELATE_HELP),
        }
    }

    fn insert_rule(&mut self, mut rule: Rule) -> RuleResult<()> {
        rule.validate()?;
        let replaced = self.rules.get(&rule.name).map(|old| old.on_type.clone());
        if replaced.is_none() && self.rules.len() >= MAX_RULES {
            return Err(RuleError::TooMany("rules", MAX_RULES));
        }
        if let Some(old_type) = replaced {
            self.by_type.remove(&(old_type, rule.name.clone()));
        }
        self.by_type
            .insert((rule.on_type.clone(), rule.name.clone()));
        self.rules.insert(rule.name.clone(), rule);
        Ok(())
    }

    fn remove_rule(&mut self, name: &[u8]) -> bool {
        match self.rules.remove(name) {
            Some(rule) => {
                self.by_type.remove(&(rule.on_type, rule.name));
                true
            }
            None => false,
        }
    }

    fn insert_relations(&mut self, relations: Vec<Relation>) -> RuleResult<()> {
        let mut new = BTreeSet::new();
        for r in &relations {
            r.validate()?;
            let key = (r.source.clone(), r.target.clone());
            if !self.relations.contains_key(&key) {
                new.insert(key);
            }
        }
        if self.relations.len() + new.len() > MAX_RELATIONS {
            return Err(RuleError::TooMany("relations", MAX_RELATIONS));
        }
        for r in relations {
            let key = (r.source.clone(), r.target.clone());
            let back = (r.target.clone(), r.source.clone());
            if r.bidirectional {
                self.reverse.insert(back);
            } else {
                self.reverse.remove(&back);
            }
            self.relations.insert(key, r);
        }
        Ok(())
    }

    fn remove_relation(&mut self, source: Vec<u8>, target: Vec<u8>) -> bool {
        let key = (source, target);
        match self.relations.remove(&key) {
            Some(_) => {
                let (source, target) = key;
                self.reverse.remove(&(target, source));
                true
            }
            None => false,
        }
    }

    /// The types a write on `root` reaches: `root` first, then the others in byte order. Each
    /// type gets the largest remaining hop budget of any path (budgets only shrink along
    /// relations, so popping the largest first settles each type on its first pop).
    pub fn reach<'a>(&'a self, root: &'a [u8]) -> Vec<&'a [u8]> {
        let mut best: BTreeMap<&'a [u8], u32> = BTreeMap::new();
        let mut done: BTreeSet<&'a [u8]> = BTreeSet::new();
        let mut heap: BinaryHeap<(u32, Reverse<&'a [u8]>)> = BinaryHeap::new();
        // The written type itself is not bounded: only the relations followed are.
        best.insert(root, u32::MAX);
        heap.push((u32::MAX, Reverse(root)));
        while let Some((budget, Reverse(ty))) = heap.pop() {
            if !done.insert(ty) || budget == 0 {
                continue;
            }
            let forward = self
                .relations
                .range((ty.to_vec(), Vec::new())..)
                .take_while(|((s, _), _)| s.as_slice() == ty)
                .map(|((_, t), r)| (t.as_slice(), r.depth));
            let backward = with_first(&self.reverse, ty).filter_map(|s| {
                self.relations
                    .get(&(s.to_vec(), ty.to_vec()))
                    .map(|r| (s, r.depth))
            });
            for (next, depth) in forward.chain(backward) {
                if done.contains(next) {
                    continue;
                }
                let left = budget.min(depth).saturating_sub(1);
                let better = match best.get(next) {
                    Some(&b) => left > b,
                    None => true,
                };
                if better {
                    best.insert(next, left);
                    heap.push((left, Reverse(next)));
                }
            }
        }
        let mut out = Vec::with_capacity(done.len());
        out.push(root);
        out.extend(done.into_iter().filter(|&t| t != root));
        out
    }

    /// The plan of a write: the tags to invalidate, grouped by strategy, in execution order.
    /// First the implicit tags `type:id` (IMMEDIATE) of the written type and of every related
    /// type reached; then, for all reached types, the rules that match the id and the
    /// operation, by descending priority (ties by name), each rendered for its type, the id and
    /// the operation. Changes no counters.
    pub fn plan(&self, w: &Write) -> Vec<Step> {
        let reached = self.reach(&w.ty);
        let implicit = reached
            .iter()
            .map(|ty| {
                let mut tag = Vec::with_capacity(ty.len() + 1 + w.id.len());
                tag.extend_from_slice(ty);
                tag.push(b':');
                tag.extend_from_slice(&w.id);
                tag
            })
            .collect();
        let mut steps = vec![Step {
            rule: None,
            strategy: RuleStrategy::Immediate,
            tags: implicit,
        }];
        let mut fired: Vec<&Rule> = reached
            .iter()
            .flat_map(|ty| with_first(&self.by_type, ty))
            .filter_map(|name| self.rules.get(name))
            .filter(|rule| rule.applies(&w.id, w.op))
            .collect();
        fired.sort_by(|a, b| (Reverse(a.priority), &a.name).cmp(&(Reverse(b.priority), &b.name)));
        steps.extend(fired.into_iter().map(|rule| Step {
            rule: Some(rule.name.clone()),
            strategy: rule.strategy,
            tags: rule.render(&rule.on_type, &w.id, w.op),
        }));
        steps
    }

    /// Records a rule's execution (after the shell applied it); unknown names are ignored.
    pub fn record(&mut self, rule: &[u8], entries: u64, now_ms: i64) {
        if let Some(rule) = self.rules.get_mut(rule) {
            rule.stats.executions = rule.stats.executions.saturating_add(1);
            rule.stats.entries_invalidated = rule.stats.entries_invalidated.saturating_add(entries);
            rule.stats.last_run_ms = Some(now_ms);
        }
    }

    /// Adds entries to a rule's count without counting an execution (a BATCHED step applied
    /// after the CACHE.WRITE that queued it was recorded).
    pub fn record_entries(&mut self, rule: &[u8], entries: u64) {
        if let Some(rule) = self.rules.get_mut(rule) {
            rule.stats.entries_invalidated = rule.stats.entries_invalidated.saturating_add(entries);
        }
    }

    /// The versioned binary form (RDB aux data, replication snapshot), counters included.
    ///
    /// Layout (integers little-endian, `bytes` = u32 length + data): magic `TCRL`, version u8,
    /// u32 rule count, per rule: name bytes, type bytes, ops u8 (0 = all, else bits create=1,
    /// update=2, delete=4), pattern u8 flag + bytes, u32 template count + template bytes each,
    /// strategy u8, priority i64, executions u64, entries u64, last run u8 flag + i64; then u32
    /// relation count, per relation: source bytes, target bytes, depth u32, bidirectional u8.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        put_len(&mut out, self.rules.len());
        for rule in self.rules.values() {
            put_bytes(&mut out, &rule.name);
            put_bytes(&mut out, &rule.on_type);
            out.push(match &rule.ops {
                None => 0,
                Some(ops) => ops.iter().fold(0, |m, o| m | o.bit()),
            });
            match &rule.pattern {
                None => out.push(0),
                Some(p) => {
                    out.push(1);
                    put_bytes(&mut out, p);
                }
            }
            put_len(&mut out, rule.templates.len());
            for t in &rule.templates {
                put_bytes(&mut out, &t.source);
            }
            out.push(rule.strategy.code());
            out.extend_from_slice(&rule.priority.to_le_bytes());
            out.extend_from_slice(&rule.stats.executions.to_le_bytes());
            out.extend_from_slice(&rule.stats.entries_invalidated.to_le_bytes());
            match rule.stats.last_run_ms {
                None => out.push(0),
                Some(ms) => {
                    out.push(1);
                    out.extend_from_slice(&ms.to_le_bytes());
                }
            }
        }
        put_len(&mut out, self.relations.len());
        for r in self.relations.values() {
            put_bytes(&mut out, &r.source);
            put_bytes(&mut out, &r.target);
            out.extend_from_slice(&r.depth.to_le_bytes());
            out.push(u8::from(r.bidirectional));
        }
        out
    }

    /// Reads [`Rules::encode`]'s form. Never panics; checks every length against the input
    /// before allocating and every value as the commands would.
    pub fn decode(buf: &[u8]) -> RuleResult<Rules> {
        decode(buf).map_err(|why| match why {
            RuleError::Data(_) => why,
            // A value the commands would refuse.
            other => {
                let text = other.to_string();
                RuleError::Data(text.strip_prefix("ERR ").unwrap_or(&text).to_string())
            }
        })
    }

    /// The commands that recreate the registry (AOF rewrite, replica sync), each as argv:
    /// rules by name, then relations by (source, target). Counters are not carried.
    #[cfg(test)]
    pub fn to_commands(&self) -> Vec<Vec<Vec<u8>>> {
        self.rules
            .values()
            .map(Rule::to_command)
            .chain(self.relations.values().map(Relation::to_command))
            .collect()
    }
}

/// `CACHE.RULE SET name ON type [OPS ops] [MATCH glob] INVALIDATE count t.. [STRATEGY s]
/// [PRIORITY n]`, options in any order.
fn parse_rule_set(args: &[&[u8]]) -> RuleResult<Rule> {
    let Some(&name) = args.get(2) else {
        return Err(arity(RULE_CMD));
    };
    check_name("rule name", name)?;
    let mut on_type: Option<&[u8]> = None;
    let mut ops: Option<Vec<Op>> = None;
    let mut pattern: Option<&[u8]> = None;
    let mut templates: Option<Vec<Template>> = None;
    let mut strategy: Option<RuleStrategy> = None;
    let mut priority: Option<i64> = None;
    // Where the arguments after the templates start (to explain a count that is too small).
    let mut after_templates = None;
    let mut i = 3;
    while let Some(&opt) = args.get(i) {
        let value = args.get(i + 1).copied();
        if eq(opt, "ON") {
            if on_type.is_some() {
                return Err(twice("ON"));
            }
            let ty = value.ok_or_else(syntax)?;
            check_name("type", ty)?;
            on_type = Some(ty);
        } else if eq(opt, "OPS") {
            if ops.is_some() {
                return Err(twice("OPS"));
            }
            ops = Some(parse_ops(value.ok_or_else(syntax)?)?);
        } else if eq(opt, "MATCH") {
            if pattern.is_some() {
                return Err(twice("MATCH"));
            }
            let p = value.ok_or_else(syntax)?;
            check_pattern(p)?;
            check_pattern_complexity(p)?;
            pattern = Some(p);
        } else if eq(opt, "INVALIDATE") {
            if templates.is_some() {
                return Err(twice("INVALIDATE"));
            }
            let n = int(value.ok_or_else(syntax)?)?;
            if n <= 0 {
                return Err(RuleError::NoTemplate);
            }
            let count = usize::try_from(n).unwrap_or(usize::MAX);
            check_template_count(count)?;
            let given = &args[i + 2..];
            if count > given.len() {
                return Err(count_mismatch(n));
            }
            templates = Some(
                given[..count]
                    .iter()
                    .map(|t| Template::parse(t))
                    .collect::<RuleResult<Vec<_>>>()?,
            );
            i += 2 + count;
            after_templates = Some((i, n));
            continue;
        } else if eq(opt, "STRATEGY") {
            if strategy.is_some() {
                return Err(twice("STRATEGY"));
            }
            strategy = Some(RuleStrategy::parse(value.ok_or_else(syntax)?)?);
        } else if eq(opt, "PRIORITY") {
            if priority.is_some() {
                return Err(twice("PRIORITY"));
            }
            let p = int(value.ok_or_else(syntax)?)?;
            check_priority(p)?;
            priority = Some(p);
        } else {
            return match after_templates {
                Some((at, n)) if at == i => Err(RuleError::CountMismatch(n, Some(word(opt)))),
                _ => Err(syntax()),
            };
        }
        i += 2;
    }
    let Some(on_type) = on_type else {
        return Err(RuleError::NeedsOn);
    };
    let Some(templates) = templates else {
        return Err(RuleError::NeedsInvalidate);
    };
    Ok(Rule {
        name: name.to_vec(),
        on_type: on_type.to_vec(),
        ops,
        pattern: pattern.map(<[u8]>::to_vec),
        glob: pattern.map(|p| Box::new(Glob::new(p))),
        templates,
        strategy: strategy.unwrap_or_default(),
        priority: priority.unwrap_or(0),
        stats: RuleStats::default(),
    })
}

fn count_mismatch(n: i64) -> RuleError {
    RuleError::CountMismatch(n, None)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Every length is bounded far below u32::MAX by the limits above.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> RuleResult<&'a [u8]> {
        if n > self.buf.len() {
            return Err(RuleError::Data("truncated".into()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> RuleResult<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> RuleResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> RuleResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> RuleResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> RuleResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn flag(&mut self) -> RuleResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(RuleError::Data(format!("bad flag {b}"))),
        }
    }

    fn len(&mut self) -> RuleResult<usize> {
        usize::try_from(self.u32()?).map_err(|_| RuleError::Data("length out of range".into()))
    }

    /// A length-prefixed byte string of at most `limit` bytes.
    fn bytes(&mut self, limit: usize) -> RuleResult<&'a [u8]> {
        let n = self.len()?;
        if n > limit {
            return Err(RuleError::Data(format!(
                "string of {n} bytes over the limit of {limit}"
            )));
        }
        self.take(n)
    }
}

fn decode(buf: &[u8]) -> RuleResult<Rules> {
    let mut r = Reader { buf };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(RuleError::Data("bad magic".into()));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(RuleError::Data(format!("unsupported version {version}")));
    }
    let mut rules = Rules::default();
    let n_rules = r.len()?;
    if n_rules > MAX_RULES {
        return Err(RuleError::Data(format!("too many rules ({n_rules})")));
    }
    for _ in 0..n_rules {
        let name = r.bytes(MAX_NAME_LEN)?.to_vec();
        let on_type = r.bytes(MAX_NAME_LEN)?.to_vec();
        let ops = match r.u8()? {
            0 => None,
            mask if mask <= 7 => Some(
                Op::ALL
                    .into_iter()
                    .filter(|o| mask & o.bit() != 0)
                    .collect(),
            ),
            mask => return Err(RuleError::Data(format!("bad operation mask {mask}"))),
        };
        let pattern = if r.flag()? {
            Some(r.bytes(MAX_PATTERN_LEN)?.to_vec())
        } else {
            None
        };
        let n_templates = r.len()?;
        check_template_count(n_templates)?;
        let mut templates = Vec::new();
        for _ in 0..n_templates {
            templates.push(Template::parse(r.bytes(MAX_TEMPLATE_LEN)?)?);
        }
        let strategy = RuleStrategy::from_code(r.u8()?)
            .ok_or_else(|| RuleError::Data("bad strategy".into()))?;
        let priority = r.i64()?;
        let executions = r.u64()?;
        let entries_invalidated = r.u64()?;
        let last_run_ms = if r.flag()? { Some(r.i64()?) } else { None };
        if rules.rules.contains_key(&name) {
            return Err(RuleError::Data(format!("duplicate rule '{}'", word(&name))));
        }
        rules.insert_rule(Rule {
            name,
            on_type,
            ops,
            glob: pattern.as_deref().map(|p| Box::new(Glob::new(p))),
            pattern,
            templates,
            strategy,
            priority,
            stats: RuleStats {
                executions,
                entries_invalidated,
                last_run_ms,
            },
        })?;
    }
    let n_relations = r.len()?;
    if n_relations > MAX_RELATIONS {
        return Err(RuleError::Data(format!(
            "too many relations ({n_relations})"
        )));
    }
    for _ in 0..n_relations {
        let source = r.bytes(MAX_NAME_LEN)?.to_vec();
        let target = r.bytes(MAX_NAME_LEN)?.to_vec();
        let depth = r.u32()?;
        let bidirectional = r.flag()?;
        if rules
            .relations
            .contains_key(&(source.clone(), target.clone()))
        {
            return Err(RuleError::Data(format!(
                "duplicate relation '{}' -> '{}'",
                word(&source),
                word(&target)
            )));
        }
        rules.insert_relations(vec![Relation {
            source,
            target,
            depth,
            bidirectional,
        }])?;
    }
    if !r.buf.is_empty() {
        return Err(RuleError::Data(format!("{} trailing bytes", r.buf.len())));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    /// The text of a refusal (None: the reply is no error).
    fn refusal(r: RuleReply) -> Option<String> {
        match r {
            RuleReply::Error(e) => Some(e.to_string()),
            _ => None,
        }
    }

    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(str::as_bytes).collect()
    }

    fn rule_cmd(s: &str) -> RuleResult<RuleCommand> {
        Rules::parse_rule_command(&a(s))
    }

    fn relate_cmd(s: &str) -> RuleResult<RelateCommand> {
        Rules::parse_relate_command(&a(s))
    }

    fn set_rule(s: &str) -> Rule {
        match rule_cmd(s) {
            Ok(RuleCommand::Set(rule)) => rule,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn err(r: RuleResult<impl std::fmt::Debug>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn registry(cmds: &[&str]) -> Rules {
        let mut rules = Rules::default();
        for c in cmds {
            let args = a(c);
            let reply = if eq(args[0], "CACHE.RULE") {
                rules.apply_rule(Rules::parse_rule_command(&args).unwrap())
            } else {
                rules.apply_relate(Rules::parse_relate_command(&args).unwrap())
            };
            assert_eq!(reply, RuleReply::Ok, "{c}");
        }
        rules
    }

    fn write(s: &str) -> Write {
        Rules::parse_write(&a(s)).unwrap()
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps[1..]
            .iter()
            .map(|s| String::from_utf8_lossy(s.rule.as_deref().unwrap()).into_owned())
            .collect()
    }

    fn strs(tags: &[Vec<u8>]) -> Vec<String> {
        tags.iter()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()
    }

    // ---- parsing ----

    #[test]
    fn rule_set_full_form() {
        let r = set_rule(
            "CACHE.RULE SET r1 ON user OPS update,DELETE MATCH 1* INVALIDATE 2 user:{id} listing \
             STRATEGY batched PRIORITY 100",
        );
        assert_eq!(r.name, b"r1");
        assert_eq!(r.on_type, b"user");
        assert_eq!(r.ops, Some(vec![Op::Update, Op::Delete]));
        assert_eq!(r.pattern.as_deref(), Some(&b"1*"[..]));
        let sources: Vec<&[u8]> = r.templates.iter().map(Template::source).collect();
        assert_eq!(sources, vec![&b"user:{id}"[..], b"listing"]);
        assert_eq!(r.strategy, RuleStrategy::Batched);
        assert_eq!(r.priority, 100);
        assert_eq!(r.stats, RuleStats::default());
    }

    #[test]
    fn rule_set_defaults_and_any_order() {
        let r = set_rule("cache.rule set r INVALIDATE 1 x PRIORITY 3 on t");
        assert_eq!(r.on_type, b"t");
        assert_eq!(r.ops, None);
        assert_eq!(r.pattern, None);
        assert_eq!(r.strategy, RuleStrategy::Immediate);
        assert_eq!(r.priority, 3);
        let r = set_rule("CACHE.RULE SET r ON t INVALIDATE 1 x");
        assert_eq!(r.priority, 0);
        // Template words that look like options are counted, not parsed.
        let r = set_rule("CACHE.RULE SET r ON t INVALIDATE 2 PRIORITY ON");
        assert_eq!(r.templates.len(), 2);
        assert_eq!(r.priority, 0);
        // OPS duplicates collapse, order normalised.
        let r = set_rule("CACHE.RULE SET r ON t OPS delete,create,delete INVALIDATE 1 x");
        assert_eq!(r.ops, Some(vec![Op::Create, Op::Delete]));
    }

    #[test]
    fn rule_subcommands() {
        assert_eq!(
            rule_cmd("CACHE.RULE DEL x"),
            Ok(RuleCommand::Del(b"x".to_vec()))
        );
        assert_eq!(rule_cmd("CACHE.RULE list"), Ok(RuleCommand::List));
        assert_eq!(rule_cmd("CACHE.RULE HELP"), Ok(RuleCommand::Help));
        let arity = "ERR wrong number of arguments for 'cache.rule' command";
        for bad in [
            "CACHE.RULE",
            "CACHE.RULE DEL",
            "CACHE.RULE DEL a b",
            "CACHE.RULE LIST x",
            "CACHE.RULE HELP x",
            "CACHE.RULE SET",
        ] {
            assert_eq!(err(rule_cmd(bad)), arity, "{bad}");
        }
        assert_eq!(
            err(rule_cmd("CACHE.RULE FOO")),
            "ERR unknown subcommand 'FOO'. Try CACHE.RULE HELP."
        );
    }

    #[test]
    fn rule_set_errors() {
        let cases = [
            (
                "CACHE.RULE SET r ON t OPS create,upsert INVALIDATE 1 x",
                "ERR unknown operation 'upsert', expected create, update or delete",
            ),
            (
                "CACHE.RULE SET r ON t OPS create, INVALIDATE 1 x",
                "ERR unknown operation '', expected create, update or delete",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 3 a b",
                "ERR INVALIDATE count 3 doesn't match the number of templates given",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 a b",
                "ERR INVALIDATE count 1 doesn't match the number of templates given (or 'b' is not an option)",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 0",
                "ERR INVALIDATE needs at least one template",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE -2 a",
                "ERR INVALIDATE needs at least one template",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 257 a",
                "ERR too many templates (limit 256)",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE x a",
                "ERR value is not an integer or out of range",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 user:{user}",
                "ERR unknown placeholder '{user}' in template 'user:{user}', expected {type}, {id} or {op}",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 user:{id",
                "ERR unclosed '{' in template 'user:{id' (write '{{' for a literal '{')",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 a}b",
                "ERR unmatched '}' in template 'a}b' (write '}}' for a literal '}')",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 x PRIORITY -1",
                "ERR PRIORITY can't be negative",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 x PRIORITY 2147483648",
                "ERR PRIORITY is out of range, must be between 0 and 2147483647",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 x PRIORITY 1.5",
                "ERR value is not an integer or out of range",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 x STRATEGY CASCADE",
                "ERR unknown strategy 'CASCADE', expected IMMEDIATE, LAZY or BATCHED",
            ),
            (
                "CACHE.RULE SET r ON t ON u INVALIDATE 1 x",
                "ERR ON given more than once",
            ),
            (
                "CACHE.RULE SET r ON t OPS create OPS update INVALIDATE 1 x",
                "ERR OPS given more than once",
            ),
            (
                "CACHE.RULE SET r ON t MATCH a MATCH b INVALIDATE 1 x",
                "ERR MATCH given more than once",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 x INVALIDATE 1 y",
                "ERR INVALIDATE given more than once",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 x STRATEGY lazy STRATEGY lazy",
                "ERR STRATEGY given more than once",
            ),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 x PRIORITY 1 PRIORITY 1",
                "ERR PRIORITY given more than once",
            ),
            (
                "CACHE.RULE SET r INVALIDATE 1 x",
                "ERR CACHE.RULE SET needs ON <type>",
            ),
            (
                "CACHE.RULE SET r",
                "ERR CACHE.RULE SET needs ON <type>",
            ),
            (
                "CACHE.RULE SET r ON t",
                "ERR CACHE.RULE SET needs INVALIDATE <count> <template> [<template> ...]",
            ),
            ("CACHE.RULE SET r ON t INVALIDATE 1 x PRIORITY", "ERR syntax error"),
            ("CACHE.RULE SET r ON", "ERR syntax error"),
            ("CACHE.RULE SET r ON t INVALIDATE", "ERR syntax error"),
            (
                "CACHE.RULE SET r ON t INVALIDATE 1 x FOO bar",
                "ERR INVALIDATE count 1 doesn't match the number of templates given (or 'FOO' is not an option)",
            ),
            ("CACHE.RULE SET r ON t INVALIDATE 1 x PRIORITY 1 FOO bar", "ERR syntax error"),
            ("CACHE.RULE SET r ON t FOO bar INVALIDATE 1 x", "ERR syntax error"),
        ];
        for (cmd, want) in cases {
            assert_eq!(err(rule_cmd(cmd)), want, "{cmd}");
        }
        // Empty and oversized names, types, templates and patterns.
        let long = vec![b'a'; 1025];
        let huge = vec![b'a'; 4097];
        let mk = |name: &[u8], ty: &[u8], pat: &[u8], tpl: &[u8]| {
            let args: Vec<&[u8]> = vec![
                b"CACHE.RULE",
                b"SET",
                name,
                b"ON",
                ty,
                b"MATCH",
                pat,
                b"INVALIDATE",
                b"1",
                tpl,
            ];
            err(Rules::parse_rule_command(&args))
        };
        assert_eq!(mk(b"", b"t", b"*", b"x"), "ERR rule name can't be empty");
        assert_eq!(
            mk(&long, b"t", b"*", b"x"),
            "ERR rule name is too long (limit 1024 bytes)"
        );
        assert_eq!(mk(b"r", b"", b"*", b"x"), "ERR type can't be empty");
        assert_eq!(
            mk(b"r", &long, b"*", b"x"),
            "ERR type is too long (limit 1024 bytes)"
        );
        assert_eq!(
            mk(b"r", b"t", &huge, b"x"),
            "ERR MATCH pattern is too long (limit 4096 bytes)"
        );
        assert_eq!(
            mk(b"r", b"t", b"*", &huge),
            "ERR template is too long (limit 4096 bytes)"
        );
        assert_eq!(mk(b"r", b"t", b"*", b""), "ERR template can't be empty");
        // The limits themselves are accepted.
        let ok_name = vec![b'n'; 1024];
        let ok_tpl = vec![b't'; 4096];
        let args: Vec<&[u8]> = vec![
            b"CACHE.RULE",
            b"SET",
            &ok_name,
            b"ON",
            &ok_name,
            b"INVALIDATE",
            b"1",
            &ok_tpl,
        ];
        assert!(Rules::parse_rule_command(&args).is_ok());
    }

    #[test]
    fn relate_parsing() {
        let rel = |s: &[u8], t: &[u8], depth, bidirectional| Relation {
            source: s.to_vec(),
            target: t.to_vec(),
            depth,
            bidirectional,
        };
        assert_eq!(
            relate_cmd("CACHE.RELATE order items inventory items DEPTH 2 BIDIRECTIONAL"),
            Ok(RelateCommand::Set(vec![
                rel(b"order", b"items", 2, true),
                rel(b"order", b"inventory", 2, true),
            ]))
        );
        assert_eq!(
            relate_cmd("CACHE.RELATE a b bidirectional depth 3"),
            Ok(RelateCommand::Set(vec![rel(b"a", b"b", 3, true)]))
        );
        assert_eq!(
            relate_cmd("CACHE.RELATE a b"),
            Ok(RelateCommand::Set(vec![rel(b"a", b"b", 1, false)]))
        );
        assert_eq!(
            relate_cmd("CACHE.RELATE del a b"),
            Ok(RelateCommand::Del {
                source: b"a".to_vec(),
                target: b"b".to_vec()
            })
        );
        assert_eq!(relate_cmd("CACHE.RELATE LIST"), Ok(RelateCommand::List));
        assert_eq!(relate_cmd("CACHE.RELATE help"), Ok(RelateCommand::Help));
        let arity = "ERR wrong number of arguments for 'cache.relate' command";
        let cases = [
            ("CACHE.RELATE", arity),
            ("CACHE.RELATE a", arity),
            ("CACHE.RELATE DEL a", arity),
            ("CACHE.RELATE DEL a b c", arity),
            ("CACHE.RELATE LIST a", arity),
            ("CACHE.RELATE HELP a", arity),
            ("CACHE.RELATE a b DEPTH -1", "ERR DEPTH can't be negative"),
            ("CACHE.RELATE a b DEPTH 0", "ERR DEPTH must be at least 1"),
            (
                "CACHE.RELATE a b DEPTH 4294967296",
                "ERR DEPTH is out of range, must be between 1 and 4294967295",
            ),
            (
                "CACHE.RELATE a b DEPTH x",
                "ERR value is not an integer or out of range",
            ),
            ("CACHE.RELATE a b DEPTH", "ERR syntax error"),
            (
                "CACHE.RELATE a b DEPTH 1 DEPTH 2",
                "ERR DEPTH given more than once",
            ),
            (
                "CACHE.RELATE a b BIDIRECTIONAL BIDIRECTIONAL",
                "ERR BIDIRECTIONAL given more than once",
            ),
            ("CACHE.RELATE a b DEPTH 2 c", "ERR syntax error"),
            (
                "CACHE.RELATE a DEPTH 2",
                "ERR CACHE.RELATE needs at least one target",
            ),
            (
                "CACHE.RELATE a b a",
                "ERR a type can't be related to itself ('a')",
            ),
        ];
        for (cmd, want) in cases {
            assert_eq!(err(relate_cmd(cmd)), want, "{cmd}");
        }
        let empty: Vec<&[u8]> = vec![b"CACHE.RELATE", b"a", b""];
        assert_eq!(
            err(Rules::parse_relate_command(&empty)),
            "ERR type can't be empty"
        );
    }

    #[test]
    fn write_parsing() {
        assert_eq!(
            write("CACHE.WRITE user 42"),
            Write {
                ty: b"user".to_vec(),
                id: b"42".to_vec(),
                op: Op::Update,
                context: None
            }
        );
        let w = write("CACHE.WRITE user 42 context why op DELETE");
        assert_eq!(w.op, Op::Delete);
        assert_eq!(w.context.as_deref(), Some(&b"why"[..]));
        let arity = "ERR wrong number of arguments for 'cache.write' command";
        let cases = [
            ("CACHE.WRITE", arity),
            ("CACHE.WRITE user", arity),
            (
                "CACHE.WRITE user 1 OP upsert",
                "ERR unknown operation 'upsert', expected create, update or delete",
            ),
            ("CACHE.WRITE user 1 OP", "ERR syntax error"),
            ("CACHE.WRITE user 1 FOO bar", "ERR syntax error"),
            (
                "CACHE.WRITE user 1 OP create OP delete",
                "ERR OP given more than once",
            ),
            (
                "CACHE.WRITE user 1 CONTEXT a CONTEXT b",
                "ERR CONTEXT given more than once",
            ),
        ];
        for (cmd, want) in cases {
            assert_eq!(err(Rules::parse_write(&a(cmd))), want, "{cmd}");
        }
        let empty: Vec<&[u8]> = vec![b"CACHE.WRITE", b"", b"1"];
        assert_eq!(err(Rules::parse_write(&empty)), "ERR type can't be empty");
        // Binary ids, empty ids.
        let bin: Vec<&[u8]> = vec![b"CACHE.WRITE", b"t", b"\x00\xff "];
        assert_eq!(Rules::parse_write(&bin).unwrap().id, b"\x00\xff ");
        let none: Vec<&[u8]> = vec![b"CACHE.WRITE", b"t", b""];
        assert_eq!(Rules::parse_write(&none).unwrap().id, b"");
    }

    #[test]
    fn ops_and_strategies() {
        for (s, op) in [
            ("create", Op::Create),
            ("UPDATE", Op::Update),
            ("Delete", Op::Delete),
        ] {
            assert_eq!(Op::parse(s.as_bytes()), Ok(op));
            assert!(op.name().eq_ignore_ascii_case(s));
        }
        assert_eq!(
            Op::parse(b"\xffx\n").map_err(|e| e.to_string()),
            Err("ERR unknown operation '\u{fffd}x ', expected create, update or delete".into())
        );
        for s in [
            RuleStrategy::Immediate,
            RuleStrategy::Lazy,
            RuleStrategy::Batched,
        ] {
            assert_eq!(
                RuleStrategy::parse(s.name().to_uppercase().as_bytes()),
                Ok(s)
            );
        }
        assert_eq!(RuleStrategy::default(), RuleStrategy::Immediate);
    }

    // ---- templates ----

    #[test]
    fn template_rendering() {
        let t = Template::parse(b"{type}:{id}:{op}").unwrap();
        assert_eq!(t.render(b"user", b"42", Op::Create), b"user:42:create");
        let t = Template::parse(b"{{literal}}-{id}}}").unwrap();
        assert_eq!(t.render(b"u", b"7", Op::Update), b"{literal}-7}");
        assert_eq!(t.source(), b"{{literal}}-{id}}}");
        let t = Template::parse(b"sessions:{id}").unwrap();
        assert_eq!(
            t.render(b"user", b"\x00{id}\xff", Op::Delete),
            b"sessions:\x00{id}\xff"
        );
        let t = Template::parse(b"listing").unwrap();
        assert_eq!(t.render(b"user", b"1", Op::Delete), b"listing");
        let t = Template::parse(b"\x00{id}\x00").unwrap();
        assert_eq!(t.render(b"", b"", Op::Delete), b"\x00\x00");
        for bad in [
            &b"{ID}"[..],
            b"{}",
            b"{id",
            b"{",
            b"}",
            b"a}",
            b"{a{id}",
            b"{ type}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
    }

    // ---- registry ----

    #[test]
    fn set_replaces_and_del() {
        let mut rules = registry(&[
            "CACHE.RULE SET r ON user INVALIDATE 1 a",
            "CACHE.RULE SET s ON user INVALIDATE 1 b",
        ]);
        rules.record(b"r", 5, 1000);
        assert_eq!(rules.rule(b"r").unwrap().stats.executions, 1);
        let reply = rules.apply_rule(set_cmd(
            "CACHE.RULE SET r ON post INVALIDATE 1 c PRIORITY 9",
        ));
        assert_eq!(reply, RuleReply::Ok);
        assert_eq!(rules.rule_count(), 2);
        let r = rules.rule(b"r").unwrap();
        assert_eq!(r.on_type, b"post");
        assert_eq!(r.stats, RuleStats::default());
        // The old type no longer fires it.
        let plan = rules.plan(&write("CACHE.WRITE user 1"));
        assert_eq!(names(&plan), vec!["s"]);
        let plan = rules.plan(&write("CACHE.WRITE post 1"));
        assert_eq!(names(&plan), vec!["r"]);
        assert_eq!(
            rules.apply_rule(RuleCommand::Del(b"r".to_vec())),
            RuleReply::Int(1)
        );
        assert_eq!(
            rules.apply_rule(RuleCommand::Del(b"r".to_vec())),
            RuleReply::Int(0)
        );
        assert_eq!(
            names(&rules.plan(&write("CACHE.WRITE post 1"))),
            Vec::<String>::new()
        );
        assert_eq!(
            rules.apply_rule(RuleCommand::Help),
            RuleReply::Help(RULE_HELP)
        );
    }

    fn set_cmd(s: &str) -> RuleCommand {
        rule_cmd(s).unwrap()
    }

    #[test]
    fn list_order_and_fields() {
        let mut rules = registry(&[
            "CACHE.RULE SET b ON t INVALIDATE 1 x PRIORITY 5",
            "CACHE.RULE SET a ON t INVALIDATE 1 x PRIORITY 5",
            "CACHE.RULE SET z ON t OPS delete MATCH 1* INVALIDATE 2 x:{id} y STRATEGY lazy PRIORITY 50",
            "CACHE.RULE SET c ON t INVALIDATE 1 x",
        ]);
        rules.record(b"z", 3, 777);
        rules.record(b"z", 4, 778);
        let RuleReply::Rows(rows) = rules.apply_rule(RuleCommand::List) else {
            panic!()
        };
        let order: Vec<&RowValue> = rows.iter().map(|r| &r[0].1).collect();
        let bytes = |s: &str| RowValue::Bytes(s.as_bytes().to_vec());
        assert_eq!(
            order,
            vec![&bytes("z"), &bytes("a"), &bytes("b"), &bytes("c")]
        );
        assert_eq!(
            rows[0],
            vec![
                ("name", bytes("z")),
                ("on", bytes("t")),
                ("ops", RowValue::List(vec![b"delete".to_vec()])),
                ("match", bytes("1*")),
                (
                    "invalidate",
                    RowValue::List(vec![b"x:{id}".to_vec(), b"y".to_vec()])
                ),
                ("strategy", bytes("lazy")),
                ("priority", RowValue::Int(50)),
                ("executions", RowValue::Int(2)),
                ("entries_invalidated", RowValue::Int(7)),
                ("last_run_ms", RowValue::Int(778)),
            ]
        );
        assert_eq!(rows[3][2].1, RowValue::List(vec![b"*".to_vec()]));
        assert_eq!(rows[3][3].1, RowValue::Nil);
        assert_eq!(rows[3][9].1, RowValue::Int(-1));
        // Unknown rules are ignored by record.
        rules.record(b"nope", 1, 1);
    }

    #[test]
    fn relate_set_del_list() {
        let mut rules = registry(&[
            "CACHE.RELATE user session prefs DEPTH 2",
            "CACHE.RELATE order items BIDIRECTIONAL",
        ]);
        assert_eq!(rules.relation_count(), 3);
        let RuleReply::Rows(rows) = rules.apply_relate(RelateCommand::List) else {
            panic!()
        };
        let bytes = |s: &str| RowValue::Bytes(s.as_bytes().to_vec());
        assert_eq!(
            rows[0],
            vec![
                ("source", bytes("order")),
                ("target", bytes("items")),
                ("depth", RowValue::Int(1)),
                ("bidirectional", RowValue::Int(1)),
            ]
        );
        assert_eq!(rows[1][1].1, bytes("prefs"));
        assert_eq!(rows[2][1].1, bytes("session"));
        // Replacing drops the reverse direction.
        assert_eq!(
            rules.apply_relate(relate_cmd("CACHE.RELATE order items").unwrap()),
            RuleReply::Ok
        );
        assert_eq!(rules.relation_count(), 3);
        assert_eq!(
            strs(&rules.plan(&write("CACHE.WRITE items 1"))[0].tags),
            vec!["items:1"]
        );
        let del = |s: &str, t: &str| RelateCommand::Del {
            source: s.as_bytes().to_vec(),
            target: t.as_bytes().to_vec(),
        };
        assert_eq!(
            rules.apply_relate(del("session", "user")),
            RuleReply::Int(0)
        );
        assert_eq!(
            rules.apply_relate(del("user", "session")),
            RuleReply::Int(1)
        );
        assert_eq!(
            rules.apply_relate(del("user", "session")),
            RuleReply::Int(0)
        );
        assert_eq!(rules.relation_count(), 2);
        assert_eq!(
            rules.apply_relate(RelateCommand::Help),
            RuleReply::Help(RELATE_HELP)
        );
    }

    #[test]
    fn bidirectional_del_clears_reverse() {
        let mut rules = registry(&["CACHE.RELATE a b BIDIRECTIONAL"]);
        assert_eq!(
            strs(&rules.plan(&write("CACHE.WRITE b 1"))[0].tags),
            vec!["b:1", "a:1"]
        );
        rules.apply_relate(relate_cmd("CACHE.RELATE DEL a b").unwrap());
        assert_eq!(rules, Rules::default());
        assert!(rules.is_empty());
    }

    #[test]
    fn limits() {
        let mut rules = Rules::default();
        for i in 0..MAX_RULES {
            let name = format!("r{i}");
            let args: Vec<&[u8]> = vec![
                b"CACHE.RULE",
                b"SET",
                name.as_bytes(),
                b"ON",
                b"t",
                b"INVALIDATE",
                b"1",
                b"x",
            ];
            let cmd = Rules::parse_rule_command(&args).unwrap();
            assert_eq!(rules.apply_rule(cmd), RuleReply::Ok);
        }
        let before = rules.clone();
        assert_eq!(
            refusal(rules.apply_rule(set_cmd("CACHE.RULE SET extra ON t INVALIDATE 1 x")))
                .as_deref(),
            Some("ERR too many rules (limit 10000)")
        );
        // Replacing at the limit is fine.
        assert_eq!(
            rules.apply_rule(set_cmd("CACHE.RULE SET r5 ON u INVALIDATE 1 x")),
            RuleReply::Ok
        );
        assert_eq!(rules.rule_count(), before.rule_count());

        let mut rules = Rules::default();
        for i in 0..MAX_RELATIONS / 2 {
            let s = format!("s{i}");
            let args: Vec<&[u8]> = vec![b"CACHE.RELATE", s.as_bytes(), b"t1", b"t2"];
            let cmd = Rules::parse_relate_command(&args).unwrap();
            assert_eq!(rules.apply_relate(cmd), RuleReply::Ok);
        }
        let before = rules.clone();
        // One new, one existing: over the limit as a whole, nothing changes.
        assert_eq!(
            refusal(rules.apply_relate(relate_cmd("CACHE.RELATE s0 t1 t3 DEPTH 5").unwrap()))
                .as_deref(),
            Some("ERR too many relations (limit 10000)")
        );
        assert_eq!(rules, before);
        assert_eq!(
            rules.apply_relate(relate_cmd("CACHE.RELATE s0 t1 DEPTH 5").unwrap()),
            RuleReply::Ok
        );
        assert_eq!(rules.relation(b"s0", b"t1").unwrap().depth, 5);
    }

    #[test]
    fn hand_made_commands_are_validated() {
        let mut rules = Rules::default();
        let mut rule = set_rule("CACHE.RULE SET r ON t INVALIDATE 1 x");
        rule.priority = -1;
        assert_eq!(
            refusal(rules.apply_rule(RuleCommand::Set(rule.clone()))).as_deref(),
            Some("ERR PRIORITY can't be negative")
        );
        rule.priority = 0;
        rule.ops = Some(vec![]);
        assert_eq!(
            refusal(rules.apply_rule(RuleCommand::Set(rule.clone()))).as_deref(),
            Some("ERR OPS needs at least one operation")
        );
        rule.ops = Some(vec![Op::Delete, Op::Create, Op::Delete]);
        rule.templates.clear();
        assert!(matches!(
            rules.apply_rule(RuleCommand::Set(rule.clone())),
            RuleReply::Error(_)
        ));
        rule.templates = vec![Template::parse(b"x").unwrap()];
        assert_eq!(rules.apply_rule(RuleCommand::Set(rule)), RuleReply::Ok);
        assert_eq!(
            rules.rule(b"r").unwrap().ops,
            Some(vec![Op::Create, Op::Delete])
        );
        let bad = Relation {
            source: b"a".to_vec(),
            target: b"b".to_vec(),
            depth: 0,
            bidirectional: false,
        };
        assert!(matches!(
            rules.apply_relate(RelateCommand::Set(vec![bad])),
            RuleReply::Error(_)
        ));
        assert_eq!(rules.relation_count(), 0);
        for (source, target, want) in [
            (
                &b"list"[..],
                &b"b"[..],
                "ERR 'list' is a subcommand of CACHE.RELATE and can't be a relation's source",
            ),
            (
                b"a",
                b"Depth",
                "ERR 'Depth' is an option of CACHE.RELATE and can't be a relation's target",
            ),
        ] {
            let bad = Relation {
                source: source.to_vec(),
                target: target.to_vec(),
                depth: 1,
                bidirectional: false,
            };
            assert_eq!(
                refusal(rules.apply_relate(RelateCommand::Set(vec![bad]))).as_deref(),
                Some(want)
            );
        }
    }

    // ---- plans ----

    #[test]
    fn plan_orders_by_priority_then_name() {
        let rules = registry(&[
            "CACHE.RULE SET low ON user INVALIDATE 1 l:{id}",
            "CACHE.RULE SET b ON user INVALIDATE 1 b:{id} STRATEGY batched PRIORITY 50",
            "CACHE.RULE SET a ON user INVALIDATE 1 a:{id} PRIORITY 50",
            "CACHE.RULE SET top ON user INVALIDATE 3 sessions:{id} listing listing PRIORITY 100",
            "CACHE.RULE SET other ON post INVALIDATE 1 p PRIORITY 1000",
        ]);
        let plan = rules.plan(&write("CACHE.WRITE user 42 OP create"));
        assert_eq!(plan[0].rule, None);
        assert_eq!(plan[0].strategy, RuleStrategy::Immediate);
        assert_eq!(strs(&plan[0].tags), vec!["user:42"]);
        assert_eq!(names(&plan), vec!["top", "a", "b", "low"]);
        assert_eq!(strs(&plan[1].tags), vec!["sessions:42", "listing"]);
        assert_eq!(plan[3].strategy, RuleStrategy::Batched);
        assert_eq!(strs(&plan[3].tags), vec!["b:42"]);
        // Nothing registered for the type: only the implicit tag.
        let plan = rules.plan(&write("CACHE.WRITE nobody 1"));
        assert_eq!(plan.len(), 1);
        assert_eq!(strs(&plan[0].tags), vec!["nobody:1"]);
    }

    #[test]
    fn plan_filters_ops_and_match() {
        let rules = registry(&[
            "CACHE.RULE SET del ON user OPS delete INVALIDATE 1 gone:{id}",
            "CACHE.RULE SET cu ON user OPS create,update INVALIDATE 1 {op}:{id}",
            "CACHE.RULE SET vip ON user MATCH vip-* INVALIDATE 1 vip",
            "CACHE.RULE SET bin ON user MATCH \\x00? INVALIDATE 1 bin",
        ]);
        assert_eq!(
            names(&rules.plan(&write("CACHE.WRITE user 1 OP delete"))),
            vec!["del"]
        );
        let plan = rules.plan(&write("CACHE.WRITE user 1"));
        assert_eq!(names(&plan), vec!["cu"]);
        assert_eq!(strs(&plan[1].tags), vec!["update:1"]);
        assert_eq!(
            names(&rules.plan(&write("CACHE.WRITE user vip-7 OP create"))),
            vec!["cu", "vip"]
        );
        let mut rules = rules;
        rules.apply_rule(
            Rules::parse_rule_command(&[
                b"CACHE.RULE",
                b"SET",
                b"bin",
                b"ON",
                b"user",
                b"MATCH",
                b"\x00?",
                b"INVALIDATE",
                b"1",
                b"b:{id}",
            ])
            .unwrap(),
        );
        let w =
            Rules::parse_write(&[b"CACHE.WRITE", b"user", b"\x00\xff", b"OP", b"delete"]).unwrap();
        let plan = rules.plan(&w);
        assert_eq!(names(&plan), vec!["bin", "del"]);
        assert_eq!(plan[1].tags, vec![b"b:\x00\xff".to_vec()]);
        assert_eq!(plan[0].tags, vec![b"user:\x00\xff".to_vec()]);
    }

    #[test]
    fn relations_carry_writes_with_depth() {
        // a -> b (depth 1), b -> c (depth 1): a write on a reaches b only.
        let rules = registry(&[
            "CACHE.RELATE a b",
            "CACHE.RELATE b c",
            "CACHE.RULE SET ra ON a INVALIDATE 1 ra:{id}",
            "CACHE.RULE SET rb ON b INVALIDATE 1 rb:{type}:{id}:{op} PRIORITY 5",
            "CACHE.RULE SET rc ON c INVALIDATE 1 rc:{id}",
        ]);
        let plan = rules.plan(&write("CACHE.WRITE a 9 OP delete"));
        assert_eq!(strs(&plan[0].tags), vec!["a:9", "b:9"]);
        assert_eq!(names(&plan), vec!["rb", "ra"]);
        assert_eq!(strs(&plan[1].tags), vec!["rb:b:9:delete"]);
        assert_eq!(
            strs(&rules.plan(&write("CACHE.WRITE b 9"))[0].tags),
            vec!["b:9", "c:9"]
        );

        // a -> b depth 2 carries on through b -> c.
        let rules = registry(&[
            "CACHE.RELATE a b DEPTH 2",
            "CACHE.RELATE b c",
            "CACHE.RELATE c d DEPTH 9",
        ]);
        assert_eq!(
            strs(&rules.plan(&write("CACHE.WRITE a 1"))[0].tags),
            vec!["a:1", "b:1", "c:1"]
        );
        // A later relation's depth bounds the budget too: b -> c depth 1 ends there even though
        // c -> d is deep.
        let rules = registry(&[
            "CACHE.RELATE a b DEPTH 5",
            "CACHE.RELATE b c",
            "CACHE.RELATE c d DEPTH 9",
        ]);
        assert_eq!(
            strs(&rules.plan(&write("CACHE.WRITE a 1"))[0].tags),
            vec!["a:1", "b:1", "c:1"]
        );
        // The best path wins: a -> b directly leaves 0, through x leaves 1 (then b -> c).
        let rules = registry(&[
            "CACHE.RELATE a b",
            "CACHE.RELATE a x DEPTH 3",
            "CACHE.RELATE x b DEPTH 3",
            "CACHE.RELATE b c DEPTH 3",
        ]);
        assert_eq!(
            strs(&rules.plan(&write("CACHE.WRITE a 1"))[0].tags),
            vec!["a:1", "b:1", "c:1", "x:1"]
        );
    }

    #[test]
    fn cycles_terminate_and_types_fire_once() {
        let rules = registry(&[
            "CACHE.RELATE a b DEPTH 100",
            "CACHE.RELATE b a DEPTH 100",
            "CACHE.RELATE b c DEPTH 100 BIDIRECTIONAL",
            "CACHE.RELATE c a DEPTH 100",
            "CACHE.RULE SET ra ON a INVALIDATE 1 ra",
            "CACHE.RULE SET rb ON b INVALIDATE 1 rb",
            "CACHE.RULE SET rc ON c INVALIDATE 1 rc",
        ]);
        for ty in ["a", "b", "c"] {
            let plan = rules.plan(&write(&format!("CACHE.WRITE {ty} 1")));
            assert_eq!(plan[0].tags.len(), 3);
            assert_eq!(plan[0].tags[0], format!("{ty}:1").into_bytes());
            assert_eq!(names(&plan), vec!["ra", "rb", "rc"]);
        }
    }

    #[test]
    fn bidirectional_goes_both_ways() {
        let rules = registry(&[
            "CACHE.RELATE user session BIDIRECTIONAL",
            "CACHE.RELATE post comment",
            "CACHE.RULE SET ru ON user INVALIDATE 1 profile:{id}",
        ]);
        let plan = rules.plan(&write("CACHE.WRITE session 5"));
        assert_eq!(strs(&plan[0].tags), vec!["session:5", "user:5"]);
        assert_eq!(strs(&plan[1].tags), vec!["profile:5"]);
        assert_eq!(
            strs(&rules.plan(&write("CACHE.WRITE comment 5"))[0].tags),
            vec!["comment:5"]
        );
    }

    #[test]
    fn plan_does_not_change_stats() {
        let rules = registry(&["CACHE.RULE SET r ON t INVALIDATE 1 x"]);
        let before = rules.clone();
        let _ = rules.plan(&write("CACHE.WRITE t 1"));
        assert_eq!(rules, before);
    }

    // ---- persistence ----

    fn sample() -> Rules {
        let mut rules = registry(&[
            "CACHE.RULE SET r1 ON user OPS update,delete MATCH 1* INVALIDATE 2 user:{id} {{x}} STRATEGY lazy PRIORITY 7",
            "CACHE.RULE SET r2 ON post INVALIDATE 1 listing",
            "CACHE.RELATE user session prefs DEPTH 3 BIDIRECTIONAL",
            "CACHE.RELATE post user",
        ]);
        rules.record(b"r1", 12, -5);
        rules.record(b"r2", u64::MAX, 9);
        rules.record(b"r2", 1, 10);
        rules
    }

    #[test]
    fn encode_decode_round_trip() {
        let rules = sample();
        let buf = rules.encode();
        assert_eq!(Rules::decode(&buf), Ok(rules.clone()));
        assert_eq!(
            Rules::decode(&Rules::default().encode()),
            Ok(Rules::default())
        );
        assert_eq!(
            rules.rule(b"r2").unwrap().stats.entries_invalidated,
            u64::MAX
        );
    }

    #[test]
    fn truncated_and_corrupt_input_rejected() {
        let buf = sample().encode();
        for n in 0..buf.len() {
            assert!(Rules::decode(&buf[..n]).is_err(), "prefix {n}");
        }
        let mut long = buf.clone();
        long.push(0);
        assert_eq!(
            Rules::decode(&long).map_err(|e| e.to_string()),
            Err("ERR invalid tagcache rules data: 1 trailing bytes".into())
        );
        let mut bad = buf.clone();
        bad[4] = 2;
        assert_eq!(
            Rules::decode(&bad).map_err(|e| e.to_string()),
            Err("ERR invalid tagcache rules data: unsupported version 2".into())
        );
        assert_eq!(
            Rules::decode(b"XXXX\x01").map_err(|e| e.to_string()),
            Err("ERR invalid tagcache rules data: bad magic".into())
        );
        assert_eq!(
            Rules::decode(b"TCRL\x01\xff\xff\xff\xff").map_err(|e| e.to_string()),
            Err("ERR invalid tagcache rules data: too many rules (4294967295)".into())
        );
        // A huge string length is refused before allocating.
        assert!(Rules::decode(b"TCRL\x01\x01\x00\x00\x00\xff\xff\x00\x00").is_err());
        // A duplicate rule.
        let one = registry(&["CACHE.RULE SET r ON t INVALIDATE 1 x"]).encode();
        let body = &one[9..one.len() - 4];
        let mut dup = b"TCRL\x01\x02\x00\x00\x00".to_vec();
        dup.extend_from_slice(body);
        dup.extend_from_slice(body);
        dup.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            Rules::decode(&dup).map_err(|e| e.to_string()),
            Err("ERR invalid tagcache rules data: duplicate rule 'r'".into())
        );
        // An invalid value inside: a negative priority.
        let mut neg = one.clone();
        let at = neg.len() - 4 - 1 - 16 - 8;
        neg[at..at + 8].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(
            Rules::decode(&neg).map_err(|e| e.to_string()),
            Err("ERR invalid tagcache rules data: PRIORITY can't be negative".into())
        );
    }

    #[test]
    fn to_commands_recreate() {
        let rules = sample();
        let cmds = rules.to_commands();
        assert_eq!(cmds.len(), 2 + 3);
        let rebuilt = replay(&cmds);
        assert_eq!(rebuilt, without_stats(&rules));
    }

    fn replay(cmds: &[Vec<Vec<u8>>]) -> Rules {
        let mut out = Rules::default();
        for argv in cmds {
            let args: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            let reply = if eq(args[0], "CACHE.RULE") {
                out.apply_rule(Rules::parse_rule_command(&args).unwrap())
            } else {
                out.apply_relate(Rules::parse_relate_command(&args).unwrap())
            };
            assert_eq!(reply, RuleReply::Ok);
        }
        out
    }

    fn without_stats(rules: &Rules) -> Rules {
        let mut out = rules.clone();
        for r in out.rules.values_mut() {
            r.stats = RuleStats::default();
        }
        out
    }

    // ---- properties ----

    const TYPES: [&str; 5] = ["a", "b", "c", "d", "e"];

    fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::sample::select(vec!["r1", "r2", "r3", "del", "LIST", "ON", "DEPTH"])
                .prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 1..6),
        ]
    }

    fn type_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::sample::select(TYPES.to_vec()).prop_map(|s| s.as_bytes().to_vec())
    }

    fn template_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                Just(b"{id}".to_vec()),
                Just(b"{type}".to_vec()),
                Just(b"{op}".to_vec()),
                Just(b"{{".to_vec()),
                Just(b"}}".to_vec()),
                prop::collection::vec(any::<u8>(), 1..4),
            ],
            1..4,
        )
        .prop_map(|parts| parts.concat())
    }

    /// Random command lines: rule sets/dels and relation sets/dels, some of them invalid.
    fn argv_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let rule_set = (
            name_strategy(),
            type_strategy(),
            prop::option::of(prop::sample::subsequence(
                vec!["create", "update", "delete"],
                1..3,
            )),
            prop::option::of(prop_oneof![
                Just(b"*".to_vec()),
                Just(b"[0-4]*".to_vec()),
                prop::collection::vec(any::<u8>(), 0..4),
            ]),
            prop::collection::vec(template_strategy(), 1..4),
            prop::option::of(prop::sample::select(vec!["IMMEDIATE", "lazy", "Batched"])),
            prop::option::of(0i64..5),
        )
            .prop_map(|(name, ty, ops, pat, tpls, strat, prio)| {
                let mut v: Vec<Vec<u8>> = vec![b"CACHE.RULE".to_vec(), b"SET".to_vec(), name];
                if let Some(p) = prio {
                    v.push(b"PRIORITY".to_vec());
                    v.push(p.to_string().into_bytes());
                }
                v.push(b"INVALIDATE".to_vec());
                v.push(tpls.len().to_string().into_bytes());
                v.extend(tpls);
                v.push(b"ON".to_vec());
                v.push(ty);
                if let Some(ops) = ops {
                    v.push(b"OPS".to_vec());
                    v.push(ops.join(",").into_bytes());
                }
                if let Some(p) = pat {
                    v.push(b"MATCH".to_vec());
                    v.push(p);
                }
                if let Some(s) = strat {
                    v.push(b"STRATEGY".to_vec());
                    v.push(s.as_bytes().to_vec());
                }
                v
            });
        let rule_del =
            name_strategy().prop_map(|name| vec![b"CACHE.RULE".to_vec(), b"DEL".to_vec(), name]);
        let relate = (
            type_strategy(),
            prop::collection::vec(type_strategy(), 1..3),
            prop::option::of(1u32..4),
            any::<bool>(),
        )
            .prop_map(|(s, ts, depth, bidi)| {
                let mut v = vec![b"CACHE.RELATE".to_vec(), s];
                v.extend(ts);
                if let Some(d) = depth {
                    v.push(b"DEPTH".to_vec());
                    v.push(d.to_string().into_bytes());
                }
                if bidi {
                    v.push(b"BIDIRECTIONAL".to_vec());
                }
                v
            });
        let relate_del = (type_strategy(), type_strategy())
            .prop_map(|(s, t)| vec![b"CACHE.RELATE".to_vec(), b"DEL".to_vec(), s, t]);
        prop_oneof![4 => rule_set, 1 => rule_del, 4 => relate, 1 => relate_del]
    }

    /// Applies the commands that parse; returns the registry and records some executions.
    fn build(cmds: &[Vec<Vec<u8>>]) -> Rules {
        let mut rules = Rules::default();
        for (n, argv) in cmds.iter().enumerate() {
            let args: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            if eq(args[0], "CACHE.RULE") {
                if let Ok(cmd) = Rules::parse_rule_command(&args) {
                    let before = rules.clone();
                    if let RuleReply::Error(_) = rules.apply_rule(cmd) {
                        assert_eq!(rules, before);
                    }
                }
                if let Some(name) = args.get(2) {
                    rules.record(name, n as u64, n as i64);
                }
            } else if let Ok(cmd) = Rules::parse_relate_command(&args) {
                let before = rules.clone();
                if let RuleReply::Error(_) = rules.apply_relate(cmd) {
                    assert_eq!(rules, before);
                }
            }
        }
        rules
    }

    /// Reference reach: a type is reached if some simple path from the root has, for every
    /// relation on it, a depth covering the rest of the path (itself included).
    fn reference_reach(rules: &Rules, root: &[u8]) -> BTreeSet<Vec<u8>> {
        let mut edges: Vec<(Vec<u8>, Vec<u8>, u32)> = Vec::new();
        for r in rules.relations() {
            edges.push((r.source.clone(), r.target.clone(), r.depth));
            if r.bidirectional {
                edges.push((r.target.clone(), r.source.clone(), r.depth));
            }
        }
        let mut out = BTreeSet::new();
        fn walk(
            edges: &[(Vec<u8>, Vec<u8>, u32)],
            path: &mut Vec<Vec<u8>>,
            depths: &mut Vec<u32>,
            out: &mut BTreeSet<Vec<u8>>,
        ) {
            let k = depths.len();
            if depths.iter().enumerate().all(|(i, &d)| d as usize >= k - i) {
                out.insert(path[path.len() - 1].clone());
            }
            let here = path[path.len() - 1].clone();
            for (s, t, d) in edges {
                if *s == here && !path.contains(t) {
                    path.push(t.clone());
                    depths.push(*d);
                    walk(edges, path, depths, out);
                    path.pop();
                    depths.pop();
                }
            }
        }
        walk(&edges, &mut vec![root.to_vec()], &mut Vec::new(), &mut out);
        out
    }

    proptest! {
        #[test]
        fn decode_never_panics(buf in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Rules::decode(&buf);
            let mut with_header = b"TCRL\x01".to_vec();
            with_header.extend_from_slice(&buf);
            let _ = Rules::decode(&with_header);
        }

        #[test]
        fn decode_survives_mutations(
            cmds in prop::collection::vec(argv_strategy(), 0..12),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut buf = build(&cmds).encode();
            for (at, b) in flips {
                if !buf.is_empty() {
                    let i = at.index(buf.len());
                    buf[i] = b;
                }
            }
            if let Ok(rules) = Rules::decode(&buf) {
                // Whatever decodes is a valid registry.
                prop_assert_eq!(Rules::decode(&rules.encode()), Ok(rules.clone()));
                prop_assert_eq!(replay(&rules.to_commands()), without_stats(&rules));
            }
        }

        #[test]
        fn encode_round_trip_and_prefixes(cmds in prop::collection::vec(argv_strategy(), 0..16)) {
            let rules = build(&cmds);
            let buf = rules.encode();
            prop_assert_eq!(Rules::decode(&buf), Ok(rules.clone()));
            for n in 0..buf.len() {
                prop_assert!(Rules::decode(&buf[..n]).is_err());
            }
        }

        #[test]
        fn to_commands_reproduce(cmds in prop::collection::vec(argv_strategy(), 0..16)) {
            let rules = build(&cmds);
            let replayed = replay(&rules.to_commands());
            prop_assert_eq!(&replayed, &without_stats(&rules));
            prop_assert_eq!(replayed.to_commands(), rules.to_commands());
        }

        #[test]
        fn plans_are_well_formed(
            cmds in prop::collection::vec(argv_strategy(), 0..20),
            root in type_strategy(),
            id in prop::collection::vec(any::<u8>(), 0..4),
            op in prop::sample::select(Op::ALL.to_vec()),
        ) {
            let rules = build(&cmds);
            let w = Write { ty: root.clone(), id: id.clone(), op, context: None };
            let plan = rules.plan(&w);
            // Implicit tags: each reached type once, root first, as the reference finds them.
            let reached = rules.reach(&root);
            prop_assert_eq!(reached[0], root.as_slice());
            let set: BTreeSet<Vec<u8>> = reached.iter().map(|t| t.to_vec()).collect();
            prop_assert_eq!(set.len(), reached.len());
            prop_assert_eq!(&set, &reference_reach(&rules, &root));
            let want: Vec<Vec<u8>> = reached.iter().map(|t| [*t, b":", &id].concat()).collect();
            prop_assert_eq!(&plan[0].tags, &want);
            prop_assert_eq!(plan[0].rule.as_ref(), None);
            // Rule steps: exactly the matching rules of reached types, ordered.
            let expected: BTreeSet<Vec<u8>> = rules
                .rules()
                .filter(|r| set.contains(&r.on_type) && r.applies(&id, op))
                .map(|r| r.name.clone())
                .collect();
            let got: Vec<&Rule> = plan[1..]
                .iter()
                .map(|s| rules.rule(s.rule.as_deref().unwrap()).unwrap())
                .collect();
            prop_assert_eq!(got.iter().map(|r| r.name.clone()).collect::<BTreeSet<_>>(), expected);
            prop_assert_eq!(got.len(), plan.len() - 1);
            for pair in got.windows(2) {
                prop_assert!((Reverse(pair[0].priority), &pair[0].name) < (Reverse(pair[1].priority), &pair[1].name));
            }
            for (step, rule) in plan[1..].iter().zip(&got) {
                prop_assert_eq!(step.strategy, rule.strategy);
                prop_assert_eq!(&step.tags, &rule.render(&rule.on_type, &id, op));
            }
        }

        #[test]
        fn templates_never_panic(src in prop::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(t) = Template::parse(&src) {
                prop_assert_eq!(t.source(), src.as_slice());
                let _ = t.render(b"t", b"i", Op::Create);
            }
        }

        #[test]
        fn parsers_never_panic(args in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "CACHE.RULE", "SET", "DEL", "LIST", "ON", "OPS", "MATCH", "INVALIDATE",
                    "STRATEGY", "PRIORITY", "DEPTH", "BIDIRECTIONAL", "OP", "CONTEXT", "1", "2",
                    "-1", "create", "lazy", "{id}",
                ]).prop_map(|s| s.as_bytes().to_vec()),
                prop::collection::vec(any::<u8>(), 0..4),
            ],
            0..12,
        )) {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let _ = Rules::parse_rule_command(&args);
            let _ = Rules::parse_relate_command(&args);
            let _ = Rules::parse_write(&args);
        }
    }
}
