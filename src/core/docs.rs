//! The command docs: summary, since, complexity and arguments of every command and
//! subcommand, as `COMMAND DOCS` and redis-cli show them. Each is a static named after its
//! command (`CACHE_RULE_SET` for `CACHE.RULE SET`); the shell's command table (`registry`)
//! points every row at its docs, and hands them to the server with
//! `RedisModule_SetCommandInfo` when it registers the command. [`syntax`] writes the one-line
//! syntax the README's command list holds, and [`complete`] checks a command's docs.

/// An argument's type (the server's `REDISMODULE_ARG_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any string (`REDISMODULE_ARG_TYPE_STRING`).
    Text,
    Integer,
    /// A key name the command's key spec covers (its index is 0: one key spec per command).
    Key,
    Pattern,
    UnixTime,
    /// The token alone.
    Token,
    OneOf,
    Block,
}

/// One argument: its name, type, token, whether it is optional or repeats, and its
/// sub-arguments (for `OneOf` and `Block`).
#[derive(Debug)]
pub struct Arg {
    pub name: &'static str,
    pub kind: Kind,
    pub token: Option<&'static str>,
    pub optional: bool,
    pub multiple: bool,
    pub sub: &'static [Arg],
}

/// The docs of one command or subcommand (the command table holds its name).
#[derive(Debug)]
pub struct Doc {
    pub summary: &'static str,
    pub since: &'static str,
    pub complexity: &'static str,
    pub args: &'static [Arg],
}

const fn a(name: &'static str, kind: Kind) -> Arg {
    Arg {
        name,
        kind,
        token: None,
        optional: false,
        multiple: false,
        sub: &[],
    }
}

impl Arg {
    const fn token(mut self, t: &'static str) -> Arg {
        self.token = Some(t);
        self
    }
    const fn optional(mut self) -> Arg {
        self.optional = true;
        self
    }
    const fn multiple(mut self) -> Arg {
        self.multiple = true;
        self
    }
    const fn of(mut self, sub: &'static [Arg]) -> Arg {
        self.sub = sub;
        self
    }
}

use Kind::*;

/// A pure token argument: its name is the token in lowercase.
const fn word(name: &'static str, token: &'static str) -> Arg {
    a(name, Token).token(token)
}

const KEY: Arg = a("key", Key);
const LOCAL: Arg = word("local", "LOCAL").optional();
const JSON: Arg = word("json", "JSON").optional();
const COUNT: Arg = a("n", Integer).token("COUNT").optional();
const DEPTH: Arg = a("n", Integer).token("DEPTH").optional();
const CONTEXT: Arg = a("text", Text).token("CONTEXT").optional();

const SELECTOR: Arg = a("selector", OneOf).of(&[
    a("key", Text).token("KEY").multiple(),
    a("tag", Text).token("TAG").multiple(),
    a("glob", Pattern).token("PATTERN"),
    a("ns", Text).token("NAMESPACE"),
    word("all", "ALL"),
    a("resource", Text).token("DEPENDENTS").multiple(),
]);

const CONSTANT: &str = "O(1)";

const EXPIRATION: Arg = a("expiration", OneOf).optional().of(&[
    a("seconds", Integer).token("EX"),
    a("ms", Integer).token("PX"),
    a("unix-seconds", UnixTime).token("EXAT"),
    a("unix-ms", UnixTime).token("PXAT"),
]);
const TAGS: Arg = a("tags", Block)
    .token("TAGS")
    .optional()
    .of(&[a("count", Integer), a("tag", Text).multiple()]);
const DEPENDS: Arg = a("depends", Block)
    .token("DEPENDS")
    .optional()
    .of(&[a("count", Integer), a("resource", Text).multiple()]);
const META: Arg = a("json-object", Text).token("META").optional();

// The docs of every command and subcommand, each named after it; the shell's command table
// (`registry`) gives each command its own.

/// `CACHE.SET`.
pub static CACHE_SET: Doc = Doc {
    summary: "Stores a cache entry with its tags, dependencies and metadata",
    since: "1.0.0",
    complexity: "O(T + D) for T tags and D dependencies",
    args: &[
        KEY,
        a("value", Text),
        a("expiration", OneOf).optional().of(&[
            a("seconds", Integer).token("EX"),
            a("ms", Integer).token("PX"),
            a("unix-seconds", UnixTime).token("EXAT"),
            a("unix-ms", UnixTime).token("PXAT"),
            word("keepttl", "KEEPTTL"),
        ]),
        a("condition", OneOf)
            .optional()
            .of(&[word("nx", "NX"), word("xx", "XX")]),
        TAGS,
        DEPENDS,
        META,
        a("token", Integer).token("GUARD").optional(),
    ],
};

/// `CACHE.MSET`.
pub static CACHE_MSET: Doc = Doc {
    summary: "Stores several cache entries at once, with shared or their own options",
    since: "1.0.0",
    complexity: "O(N + T + D) for N entries, T tags and D dependencies in all",
    args: &[
        EXPIRATION,
        TAGS,
        DEPENDS,
        META,
        a("entry", Block).token("ENTRY").multiple().of(&[
            a("key", Key),
            a("value", Text),
            EXPIRATION,
            TAGS,
            DEPENDS,
            META,
        ]),
    ],
};

/// `CACHE.GET`.
pub static CACHE_GET: Doc = Doc {
    summary: "Reads a cache entry's value, counting a hit or a miss",
    since: "1.0.0",
    complexity: CONSTANT,
    args: &[KEY],
};

/// `CACHE.FETCH`.
pub static CACHE_FETCH: Doc = Doc {
    summary: "Reads an entry for a cache-aside loop: hit, stale, miss with a lease, or wait",
    since: "1.0.0",
    complexity: CONSTANT,
    args: &[
        KEY,
        a("ms", Integer).token("LEASE").optional(),
        word("withtoken", "WITHTOKEN").optional(),
    ],
};

/// `CACHE.TOKEN`.
pub static CACHE_TOKEN: Doc = Doc {
    summary: "Returns the node's invalidation token, for CACHE.SET GUARD",
    since: "1.0.0",
    complexity: CONSTANT,
    args: &[a("key", Key).optional()],
};

/// `CACHE.MGET`.
pub static CACHE_MGET: Doc = Doc {
    summary: "Reads the values of several cache entries",
    since: "1.0.0",
    complexity: "O(N) for N keys",
    args: &[a("key", Key).multiple()],
};

/// `CACHE.TAG`.
pub static CACHE_TAG: Doc = Doc {
    summary: "Adds tags to an existing cache entry",
    since: "1.0.0",
    complexity: "O(N) for N tags",
    args: &[KEY, a("tag", Text).multiple()],
};

/// `CACHE.DEPEND`.
pub static CACHE_DEPEND: Doc = Doc {
    summary: "Adds dependencies to an existing cache entry",
    since: "1.0.0",
    complexity: "O(N) for N resources",
    args: &[KEY, a("resource", Text).multiple()],
};

/// `CACHE.INSPECT`.
pub static CACHE_INSPECT: Doc = Doc {
    summary: "Shows a cache entry's tags, dependencies, dependents, metadata and counters",
    since: "1.0.0",
    complexity: "O(T + D) for its tags and dependencies, and at most 4000 dependents looked at",
    args: &[KEY],
};

/// `CACHE.INVALIDATE`.
pub static CACHE_INVALIDATE: Doc = Doc {
    summary: "Invalidates the entries a selector picks, and their dependents",
    since: "1.0.0",
    complexity: "O(N) for the N entries selected and reached through dependencies (LAZY: the cascade's dependency links)",
    args: &[
        LOCAL,
        DEPTH,
        CONTEXT,
        a("strategy", OneOf).token("STRATEGY").optional().of(&[
            word("immediate", "IMMEDIATE"),
            word("lazy", "LAZY"),
            word("batched", "BATCHED"),
            word("soft", "SOFT"),
        ]),
        a("s", Integer).token("GRACE").optional(),
        SELECTOR,
    ],
};

/// `CACHE.KEYS`.
pub static CACHE_KEYS: Doc = Doc {
    summary: "Lists the keys the same CACHE.INVALIDATE would remove, removing nothing",
    since: "1.0.0",
    complexity: "O(N) for the N entries selected and reached, at most cache.max-reply-keys",
    args: &[LOCAL, DEPTH, SELECTOR],
};

/// `CACHE.PENDING`.
pub static CACHE_PENDING: Doc = Doc {
    summary: "Lists the queued BATCHED invalidations, applies them, or lists waiting LAZY marks",
    since: "1.0.0",
    complexity: "O(N) for N queued requests or marks",
    args: &[a("action", OneOf).optional().of(&[
        word("flush", "FLUSH"),
        word("lazy", "LAZY"),
        word("help", "HELP"),
    ])],
};

/// `CACHE.RULE`.
pub static CACHE_RULE: Doc = Doc {
    summary: "A container for rule commands: SET, DEL, LIST, HELP",
    since: "1.0.0",
    complexity: "Depends on the subcommand",
    args: &[],
};

/// `CACHE.RULE SET`.
pub static CACHE_RULE_SET: Doc = Doc {
    summary: "Adds or replaces a rule that CACHE.WRITE runs",
    since: "1.0.0",
    complexity: "O(T) for T templates",
    args: &[
        a("name", Text),
        a("type", Text).token("ON"),
        a("op[,op...]", Text).token("OPS").optional(),
        a("glob", Pattern).token("MATCH").optional(),
        a("templates", Block)
            .token("INVALIDATE")
            .of(&[a("count", Integer), a("template", Text).multiple()]),
        a("strategy", OneOf).token("STRATEGY").optional().of(&[
            word("immediate", "IMMEDIATE"),
            word("lazy", "LAZY"),
            word("batched", "BATCHED"),
        ]),
        a("n", Integer).token("PRIORITY").optional(),
    ],
};

/// `CACHE.RULE DEL`.
pub static CACHE_RULE_DEL: Doc = Doc {
    summary: "Deletes a rule",
    since: "1.0.0",
    complexity: CONSTANT,
    args: &[a("name", Text)],
};

/// `CACHE.RULE LIST`.
pub static CACHE_RULE_LIST: Doc = Doc {
    summary: "Lists the rules",
    since: "1.0.0",
    complexity: "O(N) for N rules",
    args: &[],
};

/// `CACHE.RULE HELP`.
pub static CACHE_RULE_HELP: Doc = Doc {
    summary: "Shows the rule subcommands",
    since: "1.0.0",
    complexity: CONSTANT,
    args: &[],
};

/// `CACHE.RELATE`.
pub static CACHE_RELATE: Doc = Doc {
    summary: "Relates data types so that a write on one invalidates the others",
    since: "1.0.0",
    complexity: "O(N) for N targets",
    args: &[a("form", OneOf).of(&[
        a("relation", Block).of(&[
            a("source", Text),
            a("target", Text).multiple(),
            DEPTH,
            word("bidirectional", "BIDIRECTIONAL").optional(),
        ]),
        a("del", Block)
            .token("DEL")
            .of(&[a("source", Text), a("target", Text)]),
        word("list", "LIST"),
        word("help", "HELP"),
    ])],
};

/// `CACHE.WRITE`.
pub static CACHE_WRITE: Doc = Doc {
    summary: "Reports a write to the source of truth: runs the rules and relations for it",
    since: "1.0.0",
    complexity: "O(R + N) for R matching rules and the N entries they invalidate",
    args: &[
        LOCAL,
        a("type", Text),
        a("id", Text),
        a("op", OneOf).token("OP").optional().of(&[
            word("create", "CREATE"),
            word("update", "UPDATE"),
            word("delete", "DELETE"),
        ]),
        CONTEXT,
    ],
};

/// `CACHE.TAGS`.
pub static CACHE_TAGS: Doc = Doc {
    summary: "Lists tags with their entry counts, largest first",
    since: "1.0.0",
    complexity: "O(T) for T tags (with COUNT n: the large tags alone when n of them are large)",
    args: &[LOCAL, a("glob", Pattern).token("MATCH").optional(), COUNT],
};

/// `CACHE.STATS`.
pub static CACHE_STATS: Doc = Doc {
    summary: "Shows the cache's statistics",
    since: "1.0.0",
    complexity: CONSTANT,
    args: &[LOCAL, JSON],
};

/// `CACHE.RECOMMEND`.
pub static CACHE_RECOMMEND: Doc = Doc {
    summary: "Gives advice drawn from the statistics",
    since: "1.0.0",
    complexity: CONSTANT,
    args: &[JSON],
};

/// `CACHE.EVENTS`.
pub static CACHE_EVENTS: Doc = Doc {
    summary: "Lists recent invalidations, newest first",
    since: "1.0.0",
    complexity: "O(N) for N events",
    args: &[COUNT],
};

/// `CACHE.HOTKEYS`.
pub static CACHE_HOTKEYS: Doc = Doc {
    summary: "Lists the most read keys",
    since: "1.0.0",
    complexity: "O(1): at most 256 keys",
    args: &[COUNT],
};

/// `CACHE.RESET`.
pub static CACHE_RESET: Doc = Doc {
    summary: "Zeroes the metrics, keeping the entries",
    since: "1.0.0",
    complexity: CONSTANT,
    args: &[],
};

/// `CACHE.DEBUG`.
pub static CACHE_DEBUG: Doc = Doc {
    summary: "Checks or rebuilds the index, or drives the LAZY reclaimer (tests)",
    since: "1.0.0",
    complexity: "O(N) for N entries (VERIFY, REBUILD)",
    args: &[a("subcommand", OneOf).of(&[
        word("verify", "VERIFY"),
        word("rebuild", "REBUILD"),
        a("reclaim", Block)
            .token("RECLAIM")
            .of(&[a("how", OneOf).of(&[
                a("step", Block)
                    .token("STEP")
                    .of(&[a("keys", Integer).optional()]),
                word("pause", "PAUSE"),
                word("resume", "RESUME"),
            ])]),
        word("help", "HELP"),
    ])],
};

/// One argument as redis-cli writes its hint: `TOKEN name`, `[...]` when optional, `x [x ...]`
/// when it repeats, a one-of's choices joined by ` | `, a block's parts by spaces. A
/// pure token within a one-of needs no brackets of its own.
#[cfg(test)]
pub fn render(arg: &Arg) -> String {
    let body = match arg.kind {
        Token => String::new(),
        OneOf => arg.sub.iter().map(render).collect::<Vec<_>>().join(" | "),
        Block => arg.sub.iter().map(render).collect::<Vec<_>>().join(" "),
        _ => arg.name.to_owned(),
    };
    let one = match (arg.token, body.is_empty()) {
        (Some(t), true) => t.to_owned(),
        (Some(t), false) => format!("{t} {body}"),
        (None, _) => body,
    };
    let one = if arg.multiple {
        // The token is not repeated (`KEY key [key ...]`); a block or one-of repeats whole.
        let again = match arg.kind {
            Block | OneOf => one.clone(),
            _ => arg.name.to_owned(),
        };
        format!("{one} [{again} ...]")
    } else {
        one
    };
    if arg.optional {
        format!("[{one}]")
    } else {
        one
    }
}

/// The whole syntax line of the command registered as `name` (`CACHE.RULE SET name ON type ...`
/// for the subcommand `cache.rule|set`).
#[cfg(test)]
pub fn syntax(name: &str, doc: &Doc) -> String {
    let mut out = name.replace('|', " ").to_uppercase();
    for arg in doc.args {
        out.push(' ');
        out.push_str(&render(arg));
    }
    out
}

/// Checks the docs of the command registered as `name`: a `cache.` name, a summary, since and
/// complexity, a name for every argument, parts for a one-of or block (and none for the
/// others), a token for a pure token.
#[cfg(test)]
pub fn complete(name: &str, doc: &Doc) {
    fn check(arg: &Arg, path: &str) {
        let at = format!("{path}/{}", arg.name);
        assert!(!arg.name.is_empty(), "{at}");
        match arg.kind {
            OneOf | Block => assert!(!arg.sub.is_empty(), "{at} needs parts"),
            Token => assert!(arg.token.is_some(), "{at} needs its token"),
            _ => assert!(arg.sub.is_empty(), "{at} has parts"),
        }
        for s in arg.sub {
            check(s, &at);
        }
    }
    assert!(name.starts_with("cache."), "{name}");
    assert!(!doc.summary.is_empty() && !doc.since.is_empty() && !doc.complexity.is_empty());
    for arg in doc.args {
        check(arg, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_lines_read_as_the_readme_writes_them() {
        let line = syntax;
        assert_eq!(line("cache.get", &CACHE_GET), "CACHE.GET key");
        assert_eq!(line("cache.mget", &CACHE_MGET), "CACHE.MGET key [key ...]");
        assert_eq!(
            line("cache.set", &CACHE_SET),
            "CACHE.SET key value [EX seconds | PX ms | EXAT unix-seconds | PXAT unix-ms | KEEPTTL] \
             [NX | XX] [TAGS count tag [tag ...]] [DEPENDS count resource [resource ...]] \
             [META json-object] [GUARD token]"
        );
        assert_eq!(
            line("cache.keys", &CACHE_KEYS),
            "CACHE.KEYS [LOCAL] [DEPTH n] KEY key [key ...] | TAG tag [tag ...] | PATTERN glob \
             | NAMESPACE ns | ALL | DEPENDENTS resource [resource ...]"
        );
        assert_eq!(
            line("cache.rule|del", &CACHE_RULE_DEL),
            "CACHE.RULE DEL name"
        );
        assert_eq!(
            line("cache.debug", &CACHE_DEBUG),
            "CACHE.DEBUG VERIFY | REBUILD | RECLAIM STEP [keys] | PAUSE | RESUME | HELP"
        );
    }
}
