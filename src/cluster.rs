//! Cluster-wide commands over the server's own cluster bus for modules.
//!
//! A keyless CACHE command sent to a cluster master (`CACHE.INVALIDATE`, `CACHE.WRITE`,
//! `CACHE.KEYS`, `CACHE.TAGS`, `CACHE.STATS`, and the changes of `CACHE.RULE`/`CACHE.RELATE`)
//! first does its own part, then blocks the client, sends the command to every other master
//! (`RedisModule_SendClusterMessage`), and replies once all answered, combining the replies
//! (`core::wire`). An IMMEDIATE invalidation (and CACHE.KEYS) also follows the cascade across
//! shards: every master answers with the keys it reached that still have hops left, and the next
//! round asks the masters that have dependencies to invalidate their dependents
//! (`DEPENDENTS ... DEPTH`), until no new key comes back. A master that does not answer within
//! `cache.cluster-timeout-ms` makes the command fail with an error that says how many answered;
//! the others keep what they did.
//!
//! Everything here runs on the server's main thread (commands, the bus receiver, timers): the
//! state lives in thread-locals. Requests from other masters are run from a timer, like the
//! module's other background work, never inside the bus callback.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::time::Duration;

use ahash::AHashSet;
use redis_module::{raw, Context, RedisModuleTimerID};

use crate::config;
use crate::core::index::Reach;
use crate::core::wire::{self, Answer, Master, Merge, Outcome, Request, SlotRange, SlotSet};
use crate::error::{CacheError, Result};
use crate::server::{self, Access, Blocked, Reply};
use crate::state;

use crate::reclaim::Frontier;

const REQUEST: u8 = 1;
const ANSWER: u8 = 2;
/// A master whose part of a request runs in the reclaimer's steps says that it goes on
/// (payload: the request id, 8 bytes little-endian): the sender waits on (see `keep_waiting`).
const PROGRESS: u8 = 3;

/// What one cluster-wide command sends to the other masters, and how their replies combine.
pub struct Job {
    /// For error messages.
    pub name: &'static str,
    /// The command the other masters run (without LOCAL).
    pub argv: Vec<Vec<u8>>,
    pub merge: Merge,
    /// Render the combined reply as one JSON document (CACHE.STATS JSON).
    pub json: bool,
    /// Follow the cascade across shards (IMMEDIATE invalidations; CACHE.KEYS as a dry run).
    pub cascade: Option<Cascade>,
}

impl Job {
    /// Whether the command changes anything (what a pause holds back).
    fn writes(&self) -> bool {
        command_writes(self.name.as_bytes())
    }
}

pub struct Cascade {
    /// CACHE.KEYS: list the dependents instead of invalidating them.
    pub dry_run: bool,
    pub context: Option<Vec<u8>>,
}

/// One cluster-wide command waiting for answers.
struct Op {
    /// None: a cascade taken up again after its command failed (see `resume_late`).
    client: Option<Blocked>,
    job: Job,
    db: u32,
    user: Option<Vec<u8>>,
    me: String,
    masters: usize,
    replies: Vec<Outcome>,
    /// Masters sent a request not answered yet (one round at a time: at most one each).
    waiting: AHashSet<String>,
    failed: Vec<String>,
    /// Masters whose database has dependencies (the only ones a cascade round can reach).
    dependencies: AHashSet<String>,
    frontier: Frontier,
    /// The frontiers of this round's answers, merged into `frontier` only once every master
    /// answered and some master has dependencies (else dropped: with no dependency anywhere,
    /// the keys of a large part would only fill `forwarded`).
    unmerged: Vec<Frontier>,
    forwarded: AHashSet<Vec<u8>>,
    timer: Option<RedisModuleTimerID>,
    /// The slots the current round must cover (every slot served when the command began; for a
    /// cascade round, those of the masters asked), and those the answers covered so far: a
    /// node that ran the commands as a master covers the slots it served then. A master that
    /// answers without serving them any more (a failover made it a replica, a reshard moved
    /// them) covers nothing, and the round goes to the slots' owners now.
    expected: SlotSet,
    covered: SlotSet,
    /// The current round's commands, to send again to a slot's new owner.
    round: Vec<Vec<Vec<u8>>>,
    /// The slots each master was asked for (an older build's answer does not say).
    asked: HashMap<String, Vec<SlotRange>>,
    /// Times the current round was sent again to new owners (bounded).
    reroutes: u32,
    /// How long it waits (see `deadline_ms`).
    deadline_ms: u64,
    /// Masters that hold a frontier for this command instead of having sent it, with the
    /// request id they hold it under (see `FRONTIER_INLINE`).
    held: HashMap<String, u64>,
}

thread_local! {
    /// Running a request from another master: no fan-out again.
    static REMOTE: Cell<bool> = const { Cell::new(false) };
    /// The user a request from another master runs as.
    static USER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// The cascade frontier of this command's invalidations, while one is recorded.
    static CAPTURE: RefCell<Option<Frontier>> = const { RefCell::new(None) };
    static INBOX: RefCell<VecDeque<(u8, String, Vec<u8>)>> = const { RefCell::new(VecDeque::new()) };
    static OPS: RefCell<HashMap<u64, Op>> = RefCell::new(HashMap::new());
    static PUMP_ARMED: Cell<bool> = const { Cell::new(false) };
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    /// Invalidations that failed with part of the cluster silent, kept a while so that a late
    /// answer's cascade is followed to its end (see `resume_late`).
    static LEFTOVERS: RefCell<HashMap<u64, Leftover>> = RefCell::new(HashMap::new());
    /// Frontiers this master holds for another master's request (see `FRONTIER_INLINE`), by
    /// (that master, request id), with when each is dropped (Unix ms).
    static HELD: RefCell<HashMap<(String, u64), (Frontier, i64)>> = RefCell::new(HashMap::new());
    /// The part whose command runs now and may step (see `stepping`): its token, the
    /// command's place in it, and whether a stepped invalidation took it.
    static OFFERED: Cell<Option<(u64, usize, bool)>> = const { Cell::new(None) };
    /// Parts of cluster-wide invalidations running in the reclaimer's steps on this master.
    static PARTS: RefCell<HashMap<u64, Part>> = RefCell::new(HashMap::new());
}

/// This master's part of a cluster-wide command, some of whose invalidations run in the
/// reclaimer's steps: answered when the last of them is done.
struct Part {
    /// Who is answered: the master that sent the request (None: this node's own command,
    /// answered to its `Op`), and the request id. None until the sender's own command is sent
    /// (see `fan_out`).
    route: Option<(Option<String>, u64)>,
    /// The replies, None for the commands still stepping.
    replies: Vec<Option<Outcome>>,
    frontier: Frontier,
    slots: Vec<SlotRange>,
    db: u32,
    /// How often the sender hears that the part goes on, and when it last did (Unix ms).
    beat_ms: i64,
    beat_at: i64,
}

fn next_id() -> u64 {
    NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    })
}

/// The command about to run is command `i` of part `token`: a large IMMEDIATE invalidation
/// may run in steps and answer later (see `stepping`).
fn offer(token: u64, i: usize) {
    OFFERED.with(|o| o.set(Some((token, i, false))));
}

/// Ends `offer`: whether a stepped invalidation took the command.
fn taken() -> bool {
    OFFERED.with(|o| o.take()).is_some_and(|(_, _, t)| t)
}

/// Whether the command running now is part of a cluster-wide command that can wait for the
/// reclaimer's steps (see `stepping`).
pub fn can_step() -> bool {
    OFFERED.with(Cell::get).is_some_and(|(_, _, t)| !t)
}

/// A stepped invalidation takes the command running now: the part's token and the command's
/// place in it, to answer with `part_done`. None outside a cluster-wide command's part.
pub fn stepping() -> Option<(u64, usize)> {
    OFFERED.with(|o| {
        let (token, i, taken) = o.get()?;
        if taken {
            return None;
        }
        o.set(Some((token, i, true)));
        Some((token, i))
    })
}

/// The sender's own part of an IMMEDIATE invalidation may step: returns the token to pass
/// `fan_out` (see `own_part`).
pub fn offer_own() -> u64 {
    let token = next_id();
    offer(token, 0);
    token
}

/// After the sender's own part ran: Some(token) when it steps (its reply and frontier come
/// with `part_done`).
pub fn own_part(ctx: &Context, token: u64) -> Option<u64> {
    if !taken() {
        return None;
    }
    let part = Part {
        route: None,
        replies: vec![None],
        frontier: Vec::new(),
        slots: Vec::new(),
        db: u32::try_from(server::selected_db(ctx)).unwrap_or(0),
        beat_ms: beat_ms(ctx),
        beat_at: server::now_ms(),
    };
    PARTS.with(|p| p.borrow_mut().insert(token, part));
    Some(token)
}

/// How often a stepping part tells its sender that it goes on: a quarter of the wait.
fn beat_ms(ctx: &Context) -> i64 {
    i64::try_from(deadline_ms(ctx) / 4)
        .unwrap_or(250)
        .clamp(1, 250)
}

/// A stepped invalidation of part `token` goes on: its sender hears it now and then, and keeps
/// waiting.
pub fn part_going(ctx: &Context, token: u64) {
    let now = server::now_ms();
    let route = PARTS.with(|p| {
        let mut p = p.borrow_mut();
        let part = p.get_mut(&token)?;
        if now - part.beat_at < part.beat_ms {
            return None;
        }
        part.beat_at = now;
        part.route.clone()
    });
    match route {
        Some((Some(sender), id)) => {
            let _ = send(ctx, &sender, PROGRESS, &id.to_le_bytes());
        }
        Some((None, id)) => {
            let me = OPS.with(|ops| ops.borrow().get(&id).map(|op| op.me.clone()));
            if let Some(me) = me {
                keep_waiting(ctx, id, &me);
            }
        }
        None => {}
    }
}

/// Command `i` of part `token` ran its steps to the end (or was cut short: a flush, this
/// master became a replica) with `reply` and the `frontier` its cascade goes on from. The
/// last one answers the part's sender.
pub fn part_done(ctx: &Context, token: u64, i: usize, reply: Outcome, frontier: Frontier) {
    // A master that became a replica while stepping: its new master's reclaimer deletes the
    // rest under the replicated mark, uncounted, so the reply says so rather than fall short.
    let reply = match reply {
        Ok(Reply::Int(n)) if server::is_replica(ctx) => Err(format!(
            "ERR CACHE.INVALIDATE reached only part of the cluster: a master became a replica \
             while its part ran in steps ({n} entries deleted there); its new master deletes \
             the rest of what the part covers"
        )),
        r => r,
    };
    let done = PARTS.with(|p| {
        let mut p = p.borrow_mut();
        let part = p.get_mut(&token)?;
        if let Some(r) = part.replies.get_mut(i) {
            *r = Some(reply);
        }
        part.frontier.extend(frontier);
        if part.replies.iter().any(Option::is_none) {
            return None;
        }
        p.remove(&token)
    });
    let Some(part) = done else {
        return;
    };
    let Some((sender, id)) = part.route else {
        // The sender's own command failed before it waited (see `fan_out`).
        return;
    };
    let replies = part.replies.into_iter().flatten().collect();
    // A master that became a replica while stepping covers no slot now: the sender asks the
    // slots' owners.
    let slots = if server::is_replica(ctx) {
        Vec::new()
    } else {
        part.slots
    };
    let answer = complete(
        id,
        sender.as_deref(),
        replies,
        part.frontier,
        slots,
        part.db,
    );
    match sender {
        Some(sender) => {
            if !send(ctx, &sender, ANSWER, &answer.encode()) {
                ctx.log_warning(&format!(
                    "tagcache: could not answer master {sender} (request {id})"
                ));
            }
        }
        None => {
            let me = OPS.with(|ops| ops.borrow().get(&id).map(|op| op.me.clone()));
            if let Some(me) = me {
                if answered(id, &me, answer, true) {
                    advance(ctx, id);
                }
            }
        }
    }
}

/// A master waited for (`node`) said that its stepped part goes on: the wait starts again.
fn keep_waiting(ctx: &Context, id: u64, node: &str) {
    let Some((timer, ms)) = OPS.with(|ops| {
        let mut ops = ops.borrow_mut();
        let op = ops.get_mut(&id)?;
        if !op.waiting.contains(node) {
            return None;
        }
        Some((op.timer.take(), op.deadline_ms))
    }) else {
        return;
    };
    if let Some(t) = timer {
        let _ = ctx.stop_timer::<u64>(t);
    }
    let t = ctx.create_timer(Duration::from_millis(ms), on_deadline, id);
    OPS.with(|ops| {
        if let Some(op) = ops.borrow_mut().get_mut(&id) {
            op.timer = Some(t);
        }
    });
}

fn strings_heap(v: &[Vec<u8>]) -> usize {
    v.iter()
        .map(|s| s.capacity() + std::mem::size_of::<Vec<u8>>())
        .sum()
}

fn set_heap<'a>(v: impl Iterator<Item = &'a [u8]>) -> usize {
    v.map(|s| s.len() + std::mem::size_of::<Vec<u8>>() + 9)
        .sum()
}

fn frontier_heap(f: &Frontier) -> usize {
    f.iter().map(|(k, _)| k.capacity() + 32).sum()
}

/// The heap the cluster bookkeeping takes (commands waiting for answers, failed invalidations
/// kept for late answers, messages not handled yet, parts of other masters' requests stepping
/// here and their frontiers): an estimate, walking the few of them
/// (at most one per blocked client, and `LEFTOVERS_MAX`).
pub fn heap_bytes() -> u64 {
    let ops = OPS.with(|o| {
        o.borrow()
            .values()
            .map(|op| {
                std::mem::size_of::<Op>()
                    + 8
                    + strings_heap(&op.job.argv)
                    + op.round.iter().map(|r| strings_heap(r)).sum::<usize>()
                    + set_heap(op.forwarded.iter().map(Vec::as_slice))
                    + set_heap(op.waiting.iter().map(String::as_bytes))
                    + set_heap(op.dependencies.iter().map(String::as_bytes))
                    + frontier_heap(&op.frontier)
                    + op.unmerged.iter().map(frontier_heap).sum::<usize>()
                    + set_heap(op.held.keys().map(String::as_bytes))
                    + op.replies.capacity() * std::mem::size_of::<Outcome>()
            })
            .sum::<usize>()
    });
    let leftovers = LEFTOVERS.with(|l| {
        l.borrow()
            .values()
            .map(|l| {
                std::mem::size_of::<Leftover>()
                    + 8
                    + l.context.as_ref().map_or(0, Vec::capacity)
                    + l.user.as_ref().map_or(0, Vec::capacity)
                    + set_heap(l.forwarded.iter().map(Vec::as_slice))
                    + set_heap(l.dependencies.iter().map(String::as_bytes))
                    + frontier_heap(&l.frontier)
                    + set_heap(l.held.keys().map(String::as_bytes))
            })
            .sum::<usize>()
    });
    // Frontiers this master holds for another's request (at most HELD_MAX).
    let held = HELD.with(|h| {
        h.borrow()
            .iter()
            .map(|((node, _), (f, _))| node.capacity() + 48 + frontier_heap(f))
            .sum::<usize>()
    });
    let inbox = INBOX.with(|i| {
        i.borrow()
            .iter()
            .map(|(_, from, m)| from.capacity() + m.capacity() + 56)
            .sum::<usize>()
    });
    // Other masters' requests stepping here, answered when done.
    let parts = PARTS.with(|p| {
        p.borrow()
            .values()
            .map(|part| {
                std::mem::size_of::<Part>()
                    + 8
                    + part.replies.capacity() * std::mem::size_of::<Option<Outcome>>()
                    + part.slots.capacity() * std::mem::size_of::<SlotRange>()
                    + frontier_heap(&part.frontier)
            })
            .sum::<usize>()
    });
    (ops + leftovers + held + inbox + parts) as u64 + crate::reclaim::waiters_bytes()
}

/// What a failed cluster-wide invalidation leaves for a late answer to go on with.
struct Leftover {
    db: u32,
    user: Option<Vec<u8>>,
    context: Option<Vec<u8>>,
    dependencies: AHashSet<String>,
    forwarded: AHashSet<Vec<u8>>,
    /// Keys reached whose dependents were not asked for yet (the next round never went out).
    frontier: Frontier,
    /// Frontiers held by masters and not asked for yet.
    held: HashMap<String, u64>,
    /// Dropped after this (Unix ms).
    until_ms: i64,
}

/// How many failed invalidations are kept for late answers, and for how long.
const LEFTOVERS_MAX: usize = 64;
const LEFTOVER_MS: i64 = 600_000;

/// A master whose database has no dependency (no entry there depends on anything) sends a
/// frontier of more keys than this only when asked (issue 23, defect 6): its keys matter only if
/// another master has dependencies, which the sender learns from the answers. Until then it
/// holds them (at most `HELD_MAX` frontiers, each at most as long as a leftover is kept).
const FRONTIER_INLINE: usize = 1024;
const HELD_MAX: usize = 64;

/// Internal commands of a request (never sent by clients: the first byte is 0): send the
/// frontier held for a request (argument: its id), or drop it (no answer).
const FETCH: &[u8] = b"\0fetch-frontier";
const DROP: &[u8] = b"\0drop-frontier";

/// Registers the bus message receivers (the server ignores them outside cluster mode).
pub fn register(ctx: &Context) {
    // SAFETY: the module's context during `OnLoad` (main thread); the receiver is a function
    // of the module, which outlives the registration.
    unsafe {
        if let Some(f) = raw::RedisModule_RegisterClusterMessageReceiver {
            f(ctx.ctx, REQUEST, Some(crate::ffi::cluster_message));
            f(ctx.ctx, ANSWER, Some(crate::ffi::cluster_message));
            f(ctx.ctx, PROGRESS, Some(crate::ffi::cluster_message));
        }
    }
}

/// Removes a leading `LOCAL` (argv[1]); says whether there was one. Copies the arguments only
/// then.
pub fn strip_local<'a, 'b>(argv: &'b [&'a [u8]]) -> (bool, Cow<'b, [&'a [u8]]>) {
    match argv {
        [cmd, first, rest @ ..] if first.eq_ignore_ascii_case(b"LOCAL") => (
            true,
            Cow::Owned(std::iter::once(*cmd).chain(rest.iter().copied()).collect()),
        ),
        _ => (false, Cow::Borrowed(argv)),
    }
}

/// Whether this command goes to every master: a cluster master, a command from a client (not
/// LOCAL, not from another master, not replayed from the master's stream or the AOF). A client
/// that cannot be blocked (MULTI, scripts, module calls) gets an error.
pub fn fans_out(ctx: &Context, local: bool, name: &'static str) -> Result<bool> {
    if local || REMOTE.with(Cell::get) || server::replayed(ctx) {
        return Ok(false);
    }
    let f = server::flags(ctx);
    if f & raw::REDISMODULE_CTX_FLAGS_CLUSTER == 0 || f & raw::REDISMODULE_CTX_FLAGS_MASTER == 0 {
        return Ok(false);
    }
    if !server::can_block(ctx) {
        return Err(CacheError::CannotWait(name));
    }
    Ok(true)
}

/// A request from another master is running (its client cannot be blocked).
pub fn remote() -> bool {
    REMOTE.with(Cell::get)
}

/// The user a request from another master runs as (`Some(None)`: none), if one is running.
pub fn acting_user() -> Option<Option<Vec<u8>>> {
    REMOTE
        .with(Cell::get)
        .then(|| USER.with(|u| u.borrow().clone()))
}

/// Starts recording the cascade frontier of this command's invalidations.
pub fn start_capture() {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
}

fn take_capture() -> Frontier {
    CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default()
}

/// Records what an invalidation reached (with `depth` hops allowed) while a capture runs.
pub fn capture(reach: &Reach, depth: u32) {
    CAPTURE.with(|c| {
        if let Some(frontier) = c.borrow_mut().as_mut() {
            frontier.extend(reach.frontier(depth));
        }
    });
}

/// A handler's result as a master sends it.
pub fn outcome(r: Result<Reply>) -> Outcome {
    r.map_err(|e| e.to_string())
}

fn cluster_masters(ctx: &Context) -> Result<Vec<Master>> {
    let nodes = server::call_text(ctx, "CLUSTER", &["NODES"])
        .ok_or_else(|| CacheError::Message("ERR CLUSTER NODES failed".into()))?;
    Ok(wire::masters(&nodes))
}

fn has_dependencies(db: u32) -> bool {
    state::with_db(db as usize, |idx| idx.resource_count() > 0)
}

fn send(ctx: &Context, target: &str, kind: u8, payload: &[u8]) -> bool {
    let (Ok(id), Ok(len)) = (CString::new(target), u32::try_from(payload.len())) else {
        return false;
    };
    // SAFETY: a command's or timer's context on the main thread; the target id and payload
    // live until the call returns (the server copies them into the bus message).
    unsafe {
        raw::RedisModule_SendClusterMessage.is_some_and(|f| {
            f(
                ctx.ctx,
                id.as_ptr(),
                kind,
                payload.as_ptr().cast::<c_char>(),
                len,
            ) == raw::REDISMODULE_OK as c_int
        })
    }
}

/// Sends the job to the other masters after this node did its part (`local`, with the cascade
/// frontier recorded since `start_capture`), and blocks the client until they answered. With
/// no other master the local reply is the reply.
pub fn fan_out(ctx: &Context, job: Job, local: Outcome) -> Result<Reply> {
    fan_out_part(ctx, job, local, None)
}

/// `fan_out`, this node's own part still stepping when `pending` (its token, see `own_part`):
/// then the reply waits for it as for another master.
pub fn fan_out_part(
    ctx: &Context,
    job: Job,
    local: Outcome,
    pending: Option<u64>,
) -> Result<Reply> {
    let frontier = take_capture();
    let render = |o: Outcome, json: bool| match o {
        Ok(v) if json => Ok(wire::as_json(&v)),
        Ok(v) => Ok(v),
        Err(e) => Err(CacheError::Message(e)),
    };
    let masters = cluster_masters(ctx)?;
    let Some(me) = masters.iter().find(|m| m.myself).map(|m| m.id.clone()) else {
        if pending.is_some() {
            return Err(CacheError::Message(
                "ERR this node is not among the cluster's masters: its part goes on in steps"
                    .into(),
            ));
        }
        return render(local, job.json);
    };
    if masters.len() == 1 && pending.is_none() {
        return render(wire::combine(&job.merge, vec![local]), job.json);
    }
    let Some(client) = Blocked::block(ctx) else {
        return Err(CacheError::Message(
            "ERR could not block the client to wait for the other masters".into(),
        ));
    };
    let db = u32::try_from(server::selected_db(ctx)).unwrap_or(0);
    let id = next_id();
    let mut expected = SlotSet::default();
    for m in &masters {
        expected.add(&m.slots);
    }
    let mine = masters
        .iter()
        .find(|m| m.myself)
        .map(|m| m.slots.clone())
        .unwrap_or_default();
    let mut op = Op {
        client: Some(client),
        db,
        user: server::caller_name(ctx),
        me: me.clone(),
        masters: masters.len(),
        replies: if pending.is_some() {
            Vec::new()
        } else {
            vec![local]
        },
        waiting: AHashSet::new(),
        failed: Vec::new(),
        dependencies: AHashSet::new(),
        frontier: Vec::new(),
        unmerged: Vec::new(),
        forwarded: AHashSet::new(),
        timer: None,
        expected,
        covered: SlotSet::default(),
        round: vec![job.argv.clone()],
        asked: HashMap::new(),
        reroutes: 0,
        deadline_ms: deadline_ms(ctx),
        held: HashMap::new(),
        job,
    };
    match pending {
        // Its answer covers this node's slots.
        Some(token) => {
            op.waiting.insert(me.clone());
            PARTS.with(|p| {
                if let Some(part) = p.borrow_mut().get_mut(&token) {
                    part.route = Some((None, id));
                    part.slots = mine;
                }
            });
        }
        None => op.covered = SlotSet::of(&mine),
    }
    if has_dependencies(db) {
        op.dependencies.insert(me);
    }
    op.unmerged.push(frontier);
    let request = Request {
        id,
        db,
        user: op.user.clone(),
        commands: vec![op.job.argv.clone()],
    }
    .encode();
    for m in masters.iter().filter(|m| !m.myself) {
        if !m.failing && send(ctx, &m.id, REQUEST, &request) {
            op.waiting.insert(m.id.clone());
            op.asked.insert(m.id.clone(), m.slots.clone());
        } else {
            op.failed.push(m.id.clone());
        }
    }
    let ms = op.deadline_ms;
    op.timer = Some(ctx.create_timer(Duration::from_millis(ms), on_deadline, id));
    OPS.with(|ops| ops.borrow_mut().insert(id, op));
    advance(ctx, id);
    Ok(Reply::Sent)
}

/// How long a cluster-wide command waits: `cache.cluster-timeout-ms`, but never as long as
/// `cluster-node-timeout`. A master silent for that long is marked failed, and Redis then
/// answers a blocked client `CLUSTERDOWN` itself, so the client would never learn what was done
/// and which masters were missed: the module answers first, at three quarters of it.
fn deadline_ms(ctx: &Context) -> u64 {
    let configured = u64::try_from(config::CLUSTER_TIMEOUT_MS.get()).unwrap_or(5000);
    match server::node_timeout_ms(ctx) {
        0 => configured,
        node => configured.min((node - node / 4).max(10)),
    }
}

impl Op {
    fn add_frontier(&mut self, frontier: Frontier) {
        if self.job.cascade.is_none() {
            return;
        }
        for (k, left) in frontier {
            // A key goes out once (a cycle across shards ends here).
            if self.forwarded.insert(k.clone()) {
                self.frontier.push((k, left));
            }
        }
    }

    /// The answers' frontiers into `frontier` (see `unmerged`).
    fn merge_frontiers(&mut self) {
        for f in std::mem::take(&mut self.unmerged) {
            self.add_frontier(f);
        }
    }

    fn done_waiting(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The next cascade round's commands: dependents of the frontier, grouped by hops left.
    fn round(&mut self) -> Vec<Vec<Vec<u8>>> {
        let Some(c) = &self.job.cascade else {
            return Vec::new();
        };
        let frontier = std::mem::take(&mut self.frontier);
        wire::frontier_groups(frontier)
            .into_iter()
            .map(|(left, keys)| {
                let depth = left.saturating_sub(1).to_string().into_bytes();
                let mut argv: Vec<Vec<u8>> = if c.dry_run {
                    vec![b"CACHE.KEYS".to_vec(), b"DEPTH".to_vec(), depth]
                } else {
                    vec![b"CACHE.INVALIDATE".to_vec(), b"DEPTH".to_vec(), depth]
                };
                if let (false, Some(text)) = (c.dry_run, &c.context) {
                    argv.extend([b"CONTEXT".to_vec(), text.clone()]);
                }
                argv.push(b"DEPENDENTS".to_vec());
                argv.extend(keys);
                argv
            })
            .collect()
    }
}

/// The slots of the current round that no answer covered, among those some master serves now,
/// and the masters that serve them now.
fn uncovered(ctx: &Context, op: &Op) -> Option<(SlotSet, Vec<Master>)> {
    let missing = op.expected.minus(&op.covered);
    if missing.is_empty() {
        return None;
    }
    let masters = cluster_masters(ctx).unwrap_or_default();
    let mut served = SlotSet::default();
    for m in &masters {
        served.add(&m.slots);
    }
    // A slot no master serves any more holds no data.
    let missing = missing.minus(&missing.minus(&served));
    if missing.is_empty() {
        return None;
    }
    let owners = masters
        .into_iter()
        .filter(|m| missing.meets(&m.slots))
        .collect();
    Some((missing, owners))
}

/// How many times one round goes again to the slots' new owners before the command fails.
const MAX_REROUTES: u32 = 8;

/// The current round reached every master asked, but some slots were not covered (a master
/// became a replica, slots moved): sends the round to their owners now. True when it did (the
/// command waits for them again).
fn reroute(ctx: &Context, id: u64) -> bool {
    let Some((round, db, user, me, owners)) = OPS.with(|ops| {
        let ops = ops.borrow();
        let op = ops.get(&id)?;
        if op.reroutes >= MAX_REROUTES {
            return None;
        }
        let (_, owners) = uncovered(ctx, op)?;
        Some((
            op.round.clone(),
            op.db,
            op.user.clone(),
            op.me.clone(),
            owners,
        ))
    }) else {
        return false;
    };
    let request = Request {
        id,
        db,
        user,
        commands: round,
    };
    let payload = request.encode();
    OPS.with(|ops| {
        if let Some(op) = ops.borrow_mut().get_mut(&id) {
            op.reroutes += 1;
        }
    });
    let mut sent = false;
    for m in owners {
        if m.id == me {
            own_round(ctx, id, &me, &request);
            sent = true;
        } else if !m.failing && send(ctx, &m.id, REQUEST, &payload) {
            OPS.with(|ops| {
                if let Some(op) = ops.borrow_mut().get_mut(&id) {
                    op.waiting.insert(m.id.clone());
                    op.asked.insert(m.id.clone(), m.slots.clone());
                    op.failed.retain(|f| f != &m.id);
                }
            });
            sent = true;
        } else {
            OPS.with(|ops| {
                if let Some(op) = ops.borrow_mut().get_mut(&id) {
                    if !op.failed.contains(&m.id) {
                        op.failed.push(m.id.clone());
                    }
                }
            });
        }
    }
    sent
}

/// Moves a cluster-wide command on once every master answered and every slot was covered: the
/// next cascade round, or the reply.
fn advance(ctx: &Context, id: u64) {
    loop {
        let waiting = OPS.with(|ops| ops.borrow().get(&id).map(|op| !op.done_waiting()));
        match waiting {
            None => return,
            Some(true) => return,
            Some(false) => {}
        }
        if reroute(ctx, id) {
            continue;
        }
        let masters = cluster_masters(ctx).unwrap_or_default();
        let mut unneeded = None;
        let next = OPS.with(|ops| {
            let mut ops = ops.borrow_mut();
            let Some(op) = ops.get_mut(&id) else {
                return Next::Finish;
            };
            if !op.done_waiting() {
                return Next::Wait;
            }
            if !op.expected.minus(&op.covered).is_empty() {
                // Slots left uncovered after the reroutes: the command fails (see `finish`).
                return Next::Finish;
            }
            // A round only reaches masters with dependencies: with none, the frontier is of no
            // use, and the frontiers masters hold are not asked for (issue 23, defect 6).
            if op.dependencies.is_empty() {
                op.unmerged.clear();
                op.frontier.clear();
                unneeded = Some((std::mem::take(&mut op.held), op.db));
            } else if !op.held.is_empty() {
                let held = std::mem::take(&mut op.held).into_iter().collect();
                return Next::Fetch(held, op.db, op.user.clone());
            }
            op.merge_frontiers();
            let commands = op.round();
            if commands.is_empty() {
                return Next::Finish;
            }
            let targets: Vec<String> = op
                .dependencies
                .iter()
                .filter(|n| !op.failed.contains(n))
                .cloned()
                .collect();
            // The new round covers the slots of the masters it asks.
            op.expected = SlotSet::default();
            op.covered = SlotSet::default();
            for m in masters.iter().filter(|m| targets.contains(&m.id)) {
                op.expected.add(&m.slots);
            }
            op.round = commands.clone();
            op.reroutes = 0;
            Next::Round(commands, targets, op.db, op.user.clone(), op.me.clone())
        });
        if let Some((held, db)) = unneeded {
            drop_held(ctx, held, db);
        }
        let (commands, targets, db, user, me) = match next {
            Next::Finish => return finish(ctx, id),
            Next::Wait => return,
            Next::Fetch(held, db, user) => {
                for (node, hid) in held {
                    let request = Request {
                        id,
                        db,
                        user: user.clone(),
                        commands: vec![vec![FETCH.to_vec(), hid.to_string().into_bytes()]],
                    };
                    let sent = send(ctx, &node, REQUEST, &request.encode());
                    OPS.with(|ops| {
                        if let Some(op) = ops.borrow_mut().get_mut(&id) {
                            if sent {
                                op.waiting.insert(node);
                            } else {
                                // Its keys are lost: the command fails, naming it.
                                op.failed.push(node);
                            }
                        }
                    });
                }
                continue;
            }
            Next::Round(commands, targets, db, user, me) => (commands, targets, db, user, me),
        };
        let request = Request {
            id,
            db,
            user,
            commands,
        };
        let payload = request.encode();
        for t in targets {
            if t == me {
                own_round(ctx, id, &me, &request);
            } else if send(ctx, &t, REQUEST, &payload) {
                let slots = masters
                    .iter()
                    .find(|m| m.id == t)
                    .map(|m| m.slots.clone())
                    .unwrap_or_default();
                OPS.with(|ops| {
                    if let Some(op) = ops.borrow_mut().get_mut(&id) {
                        op.asked.insert(t.clone(), slots);
                        op.waiting.insert(t);
                    }
                });
            } else {
                OPS.with(|ops| {
                    if let Some(op) = ops.borrow_mut().get_mut(&id) {
                        op.failed.push(t);
                    }
                });
            }
        }
    }
}

/// Runs a round of command `id` on this node (`me`): its answer now, or, while it steps, the
/// command waits for this node as for another master.
fn own_round(ctx: &Context, id: u64, me: &str, request: &Request) {
    match execute(ctx, request, None) {
        Some(answer) => {
            answered(id, me, answer, false);
        }
        None => OPS.with(|ops| {
            if let Some(op) = ops.borrow_mut().get_mut(&id) {
                op.waiting.insert(me.to_owned());
            }
        }),
    }
}

/// What `advance` does next.
enum Next {
    Wait,
    Finish,
    /// Ask these masters for the frontiers they hold (under these request ids).
    Fetch(Vec<(String, u64)>, u32, Option<Vec<u8>>),
    /// Send a cascade round: commands, targets, database, user, this node.
    Round(Vec<Vec<Vec<u8>>>, Vec<String>, u32, Option<Vec<u8>>, String),
}

/// Records a master's answer; true when the command may move on.
fn answered(id: u64, from: &str, answer: Answer, counted: bool) -> bool {
    OPS.with(|ops| {
        let mut ops = ops.borrow_mut();
        let Some(op) = ops.get_mut(&id) else {
            return false;
        };
        // Not asked, or answered already (late after a failure): ignored.
        if counted && !op.waiting.remove(from) {
            return false;
        }
        op.replies.extend(answer.replies);
        match &answer.slots {
            Some(slots) => op.covered.add(slots),
            // An older build: taken to cover what it was asked for.
            None => {
                if let Some(slots) = op.asked.get(from) {
                    op.covered.add(slots);
                }
            }
        }
        if answer.dependencies {
            op.dependencies.insert(from.to_owned());
        } else {
            op.dependencies.remove(from);
        }
        op.unmerged.push(answer.frontier);
        if answer.held > 0 {
            op.held.insert(from.to_owned(), id);
        }
        op.done_waiting()
    })
}

/// Replies: the combined replies, or the error naming how many masters answered.
fn finish(ctx: &Context, id: u64) {
    let Some(mut op) = OPS.with(|ops| ops.borrow_mut().remove(&id)) else {
        return;
    };
    if let Some(t) = op.timer.take() {
        let _ = ctx.stop_timer::<u64>(t);
    }
    // Past the deadline: who has not answered failed.
    for node in std::mem::take(&mut op.waiting) {
        if !op.failed.contains(&node) {
            op.failed.push(node);
        }
    }
    // What the answers reached, for a leftover (empty unless it failed).
    op.merge_frontiers();
    let merged = wire::combine(&op.job.merge, op.replies);
    let missing = op.expected.minus(&op.covered);
    let answer = if op.failed.is_empty() && missing.is_empty() {
        match merged {
            Err(e) => Err(CacheError::Message(e)),
            Ok(v) if op.job.json => Ok(wire::as_json(&v)),
            Ok(v) => Ok(v),
        }
    } else {
        op.failed.sort();
        let done = match (&op.job.merge, &merged) {
            (Merge::Sum, Ok(Reply::Int(n))) => {
                format!("; {n} entries invalidated on the masters that answered")
            }
            _ => String::new(),
        };
        let why = if op.failed.is_empty() {
            // Everyone answered, but the slots' owners changed under the command faster than
            // it could follow them.
            format!(
                "slots {} were not covered (their masters changed while it ran)",
                wire::ranges_text(&missing.ranges())
            )
        } else {
            let answered = op.masters.saturating_sub(op.failed.len());
            format!(
                "{answered} of {} masters answered within {} ms (cache.cluster-timeout-ms is {}, \
                 and the wait stays under cluster-node-timeout); no answer from {}",
                op.masters,
                op.deadline_ms,
                config::CLUSTER_TIMEOUT_MS.get(),
                op.failed.join(", "),
            )
        };
        Err(CacheError::Message(format!(
            "ERR {} reached only part of the cluster: {why}{done}",
            op.job.name,
        )))
    };
    let failed = !op.failed.is_empty() || !missing.is_empty();
    match op.client.take() {
        Some(client) => client.answer(answer),
        None => match &answer {
            Ok(_) => ctx.log_notice(&format!(
                "tagcache: the cascade of a {} that reached only part of the cluster went on \
                 from a late answer and ended",
                op.job.name
            )),
            Err(e) => ctx.log_warning(&format!("tagcache: a late cascade ended: {e}")),
        },
    }
    // A master that answers late may still have removed entries whose dependents elsewhere
    // are then left: keep what the cascade needs to go on from its answer.
    if let (true, Some(c)) = (failed, &op.job.cascade) {
        if !c.dry_run {
            let now = server::now_ms();
            LEFTOVERS.with(|l| {
                let mut l = l.borrow_mut();
                l.retain(|_, x| x.until_ms > now);
                if l.len() < LEFTOVERS_MAX {
                    l.insert(
                        id,
                        Leftover {
                            db: op.db,
                            user: op.user.clone(),
                            context: c.context.clone(),
                            dependencies: op.dependencies.clone(),
                            forwarded: op.forwarded.clone(),
                            frontier: std::mem::take(&mut op.frontier),
                            held: std::mem::take(&mut op.held),
                            until_ms: now + LEFTOVER_MS,
                        },
                    );
                }
            });
        }
    }
    // Frontiers still held for it that nothing will ask for.
    drop_held(ctx, std::mem::take(&mut op.held), op.db);
}

/// Tells the masters holding a frontier that it is not needed.
fn drop_held(ctx: &Context, held: HashMap<String, u64>, db: u32) {
    for (node, hid) in held {
        let req = Request {
            id: hid,
            db,
            user: None,
            commands: vec![vec![DROP.to_vec(), hid.to_string().into_bytes()]],
        };
        let _ = send(ctx, &node, REQUEST, &req.encode());
    }
}

/// Keeps `frontier` for master `from`'s request `id`; false when too many are held already
/// (then it is sent with the answer).
fn hold(from: &str, id: u64, frontier: &mut Frontier) -> bool {
    let now = server::now_ms();
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.retain(|_, (_, until)| *until > now);
        if h.len() >= HELD_MAX {
            return false;
        }
        h.insert(
            (from.to_owned(), id),
            (std::mem::take(frontier), now + LEFTOVER_MS),
        );
        true
    })
}

/// The request id argument of FETCH/DROP.
fn held_id(argv: &[Vec<u8>]) -> Option<u64> {
    std::str::from_utf8(argv.get(1)?).ok()?.parse().ok()
}

/// A request that is only FETCH or DROP (internal: it writes nothing).
fn internal(req: &Request) -> Option<&[u8]> {
    match req.commands.as_slice() {
        [argv] => argv
            .first()
            .map(Vec::as_slice)
            .filter(|n| *n == FETCH || *n == DROP),
        _ => None,
    }
}

/// An answer for a cluster-wide invalidation that already failed (a master that was silent,
/// then ran the request): its cascade goes on from what that master removed, with no client
/// waiting, so the dependents on other shards do not stay behind.
fn resume_late(ctx: &Context, id: u64, from: &str, answer: Answer) {
    let Some(left) = LEFTOVERS.with(|l| l.borrow().get(&id).map(|x| x.until_ms)) else {
        return;
    };
    if left <= server::now_ms() {
        return;
    }
    let Some(mut x) = LEFTOVERS.with(|l| l.borrow_mut().remove(&id)) else {
        return;
    };
    if answer.frontier.is_empty() && x.frontier.is_empty() && answer.held == 0 && x.held.is_empty()
    {
        return;
    }
    if answer.dependencies {
        x.dependencies.insert(from.to_owned());
    }
    let Ok(masters) = cluster_masters(ctx) else {
        return;
    };
    let Some(me) = masters.iter().find(|m| m.myself).map(|m| m.id.clone()) else {
        return;
    };
    if has_dependencies(x.db) {
        x.dependencies.insert(me.clone());
    }
    let new_id = next_id();
    let mut op = Op {
        client: None,
        job: Job {
            name: "CACHE.INVALIDATE",
            argv: Vec::new(),
            merge: Merge::Sum,
            json: false,
            cascade: Some(Cascade {
                dry_run: false,
                context: x.context,
            }),
        },
        db: x.db,
        user: x.user,
        me,
        masters: masters.len(),
        replies: Vec::new(),
        waiting: AHashSet::new(),
        failed: Vec::new(),
        dependencies: x.dependencies,
        frontier: Vec::new(),
        unmerged: Vec::new(),
        forwarded: x.forwarded,
        timer: None,
        expected: SlotSet::default(),
        covered: SlotSet::default(),
        round: Vec::new(),
        asked: HashMap::new(),
        reroutes: 0,
        deadline_ms: deadline_ms(ctx),
        held: x.held,
    };
    // What was reached before the failure and never asked for, then what the late master
    // reached (each key once: `forwarded` holds what went out already), and what it holds.
    op.frontier = x.frontier;
    op.add_frontier(answer.frontier);
    if answer.held > 0 {
        op.held.insert(from.to_owned(), id);
    }
    let ms = op.deadline_ms;
    op.timer = Some(ctx.create_timer(Duration::from_millis(ms), on_deadline, new_id));
    OPS.with(|ops| ops.borrow_mut().insert(new_id, op));
    advance(ctx, new_id);
}

fn on_deadline(ctx: &Context, id: u64) {
    OPS.with(|ops| {
        // The timer has fired: nothing to stop.
        if let Some(op) = ops.borrow_mut().get_mut(&id) {
            op.timer = None;
        }
    });
    finish(ctx, id);
}

/// A message from another master (see `ffi::cluster_message`): queued for the pump.
pub fn received(ctx: &Context, kind: u8, sender: String, payload: Vec<u8>) {
    INBOX.with(|q| q.borrow_mut().push_back((kind, sender, payload)));
    arm(ctx, 0);
}

fn arm(ctx: &Context, ms: u64) {
    if PUMP_ARMED.with(|a| a.replace(true)) {
        return;
    }
    ctx.create_timer(Duration::from_millis(ms), on_pump, ());
}

/// Whether a cluster-wide command changes anything (an unknown one is taken to).
fn command_writes(name: &[u8]) -> bool {
    crate::registry::cluster_command(name).is_none_or(|(_, writes)| writes)
}

/// Whether the cluster-wide command an answer belongs to writes (false once it is gone).
fn op_writes(id: u64) -> bool {
    OPS.with(|ops| ops.borrow().get(&id).is_some_and(|op| op.job.writes()))
}

fn on_pump(ctx: &Context, _: ()) {
    PUMP_ARMED.with(|a| a.set(false));
    // During a pause (CLIENT PAUSE WRITE, a failover) nothing may write or propagate: requests
    // and answers that would wait, in their order; reads go on, as they do for clients.
    let paused = server::writes_paused();
    let mut held = VecDeque::new();
    while let Some((kind, sender, payload)) = INBOX.with(|q| q.borrow_mut().pop_front()) {
        let outcome = crate::error::catch(|| match kind {
            REQUEST => match Request::decode(&payload) {
                Ok(req) if internal(&req) == Some(DROP) => {
                    if let Some(hid) = held_id(&req.commands[0]) {
                        HELD.with(|h| h.borrow_mut().remove(&(sender.clone(), hid)));
                    }
                    None
                }
                // A request with a command that writes waits out the pause (a FETCH writes
                // nothing).
                Ok(req)
                    if paused
                        && internal(&req).is_none()
                        && req
                            .commands
                            .iter()
                            .any(|argv| argv.first().is_none_or(|n| command_writes(n))) =>
                {
                    Some((kind, sender, payload))
                }
                Ok(req) => {
                    let Some(answer) = execute(ctx, &req, Some(&sender)) else {
                        // Stepping: `part_done` answers.
                        return None;
                    };
                    if !send(ctx, &sender, ANSWER, &answer.encode()) {
                        ctx.log_warning(&format!(
                            "tagcache: could not answer master {sender} (request {})",
                            req.id
                        ));
                    }
                    None
                }
                Err(e) => {
                    ctx.log_warning(&format!("tagcache: bad request from {sender}: {e}"));
                    None
                }
            },
            ANSWER => match Answer::decode(&payload) {
                // The answer to a write may start its next cascade round: it waits too.
                Ok(a) if paused && op_writes(a.id) => Some((kind, sender, payload)),
                Ok(a) => {
                    let id = a.id;
                    if OPS.with(|ops| !ops.borrow().contains_key(&id)) {
                        resume_late(ctx, id, &sender, a);
                    } else if answered(id, &sender, a, true) {
                        advance(ctx, id);
                    }
                    None
                }
                Err(e) => {
                    ctx.log_warning(&format!("tagcache: bad answer from {sender}: {e}"));
                    None
                }
            },
            PROGRESS => {
                if let Ok(id) = <[u8; 8]>::try_from(payload.as_slice()) {
                    keep_waiting(ctx, u64::from_le_bytes(id), &sender);
                }
                None
            }
            _ => None,
        });
        match outcome {
            Ok(Some(wait)) => held.push_back(wait),
            Ok(None) => {}
            Err(why) => ctx.log_warning(&format!("tagcache: a cluster message failed: {why}")),
        }
    }
    if !held.is_empty() {
        INBOX.with(|q| {
            let mut q = q.borrow_mut();
            held.extend(q.drain(..));
            *q = held;
        });
        arm(ctx, 10);
    }
}

/// Runs another master's request here, as its user, in its database. `holder`: the master
/// that sent it (None: this node's own round), for which a large frontier may be held. None
/// when a large IMMEDIATE invalidation runs in the reclaimer's steps: the part answers when
/// they are done (see `part_done`).
fn execute(ctx: &Context, req: &Request, holder: Option<&str>) -> Option<Answer> {
    if let (Some(FETCH), Some(from)) = (internal(req), holder) {
        return Some(fetched(req, from));
    }
    if server::is_replica(ctx) {
        // Sent while the sender still saw this node as a master (a node that just joined as a
        // replica, or a failover): it covers no slot, so the sender asks the slots' master.
        return Some(Answer {
            id: req.id,
            replies: Vec::new(),
            frontier: Vec::new(),
            dependencies: false,
            slots: Some(Vec::new()),
            held: 0,
        });
    }
    // The slots this node serves now: what running the commands here covers.
    let slots = server::call_text(ctx, "CLUSTER", &["NODES"])
        .map(|nodes| wire::my_slots(&nodes))
        .unwrap_or_default();
    let refuse = |why: String| Answer {
        id: req.id,
        replies: req.commands.iter().map(|_| Err(why.clone())).collect(),
        frontier: Vec::new(),
        dependencies: false,
        slots: Some(slots.clone()),
        held: 0,
    };
    if let Some(u) = &req.user {
        if Access::of_user(ctx, u).is_none() {
            return Some(refuse(format!(
                "ERR user '{}' does not exist on this master",
                String::from_utf8_lossy(u)
            )));
        }
    }
    let original = server::selected_db(ctx);
    if !server::select_db(ctx, req.db as usize) {
        return Some(refuse("ERR DB index is out of range".into()));
    }
    REMOTE.with(|r| r.set(true));
    USER.with(|u| *u.borrow_mut() = req.user.clone());
    start_capture();
    let token = next_id();
    let replies: Vec<Option<Outcome>> = req
        .commands
        .iter()
        .enumerate()
        .map(|(i, argv)| {
            let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            let handler = argv
                .first()
                .and_then(|n| crate::registry::cluster_command(n))
                .map(|(h, _)| h);
            offer(token, i);
            let reply = match handler {
                None => Err("ERR unknown cluster-wide command".into()),
                Some(h) => match crate::error::catch(|| h(ctx, &[], &argv)) {
                    Ok(r) => outcome(r),
                    Err(why) => {
                        ctx.log_warning(&format!("tagcache: a cluster request failed: {why}"));
                        Err(CacheError::Internal(why).to_string())
                    }
                },
            };
            // Stepping: the reply comes with `part_done`.
            (!taken()).then_some(reply)
        })
        .collect();
    let frontier = take_capture();
    REMOTE.with(|r| r.set(false));
    USER.with(|u| *u.borrow_mut() = None);
    server::select_db(ctx, original);
    if replies.iter().any(Option::is_none) {
        let part = Part {
            route: Some((holder.map(str::to_owned), req.id)),
            replies,
            frontier,
            slots,
            db: req.db,
            beat_ms: beat_ms(ctx),
            beat_at: server::now_ms(),
        };
        PARTS.with(|p| p.borrow_mut().insert(token, part));
        return None;
    }
    let replies = replies.into_iter().flatten().collect();
    Some(complete(req.id, holder, replies, frontier, slots, req.db))
}

/// The answer of a request `id` that ran here: `holder` as for `execute`.
fn complete(
    id: u64,
    holder: Option<&str>,
    replies: Vec<Outcome>,
    mut frontier: Frontier,
    slots: Vec<SlotRange>,
    db: u32,
) -> Answer {
    let dependencies = has_dependencies(db);
    // No entry here depends on anything: the keys matter only if another master has
    // dependencies, which the sender learns from every answer. A large frontier waits here.
    let mut held = 0;
    if let Some(from) = holder {
        let n = frontier.len() as u64;
        if !dependencies && frontier.len() > FRONTIER_INLINE && hold(from, id, &mut frontier) {
            held = n;
        }
    }
    Answer {
        id,
        replies,
        frontier,
        dependencies,
        slots: Some(slots),
        held,
    }
}

/// The answer to a FETCH: the frontier held for it, or an error when it is gone.
fn fetched(req: &Request, from: &str) -> Answer {
    let hid = held_id(&req.commands[0]);
    let got = hid.and_then(|h| HELD.with(|x| x.borrow_mut().remove(&(from.to_owned(), h))));
    let (replies, frontier) = match got {
        Some((frontier, _)) => (Vec::new(), frontier),
        None => (
            vec![Err(format!(
                "ERR the cascade's keys this master held for request {} are gone (kept {} s \
                 at most): its dependents on other masters were not invalidated",
                hid.unwrap_or(0),
                LEFTOVER_MS / 1000
            ))],
            Vec::new(),
        ),
    };
    Answer {
        id: req.id,
        replies,
        frontier,
        dependencies: false,
        slots: Some(Vec::new()),
        held: 0,
    }
}

/// The strings of a command as owned bytes (to send elsewhere).
pub fn owned(argv: &[&[u8]]) -> Vec<Vec<u8>> {
    argv.iter().map(|a| a.to_vec()).collect()
}
