//! Cluster-wide commands, the pure part: the messages masters exchange over the cluster bus
//! (requests, answers, replies), the masters a command must reach (from `CLUSTER NODES`), and how
//! the masters' replies combine into one (sums, key unions, tag sizes, merged statistics).

use std::collections::BTreeSet;

use ahash::AHashMap;

use super::reply::Reply;

/// One master's reply to one command: the reply, or its error text.
pub type Outcome = std::result::Result<Reply, String>;

/// Work for another master: commands to run there, in order, in database `db`, as `user`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: u64,
    pub db: u32,
    pub user: Option<Vec<u8>>,
    pub commands: Vec<Vec<Vec<u8>>>,
}

/// A master's answer: one reply per command, the resources whose dependents the cascade still
/// reaches (with the hops left), whether that database has any dependency at all, and the slots
/// the node served as a master when it ran the commands (None: an older build, which does not
/// say). A node that is no longer a master answers with no slot: it covered nothing. `held`:
/// the number of frontier keys the master kept instead of sending them (a large frontier from
/// a database without dependencies: only needed when another master has some, and then asked
/// for); 0 when it sent them all (and from an older build).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub id: u64,
    pub replies: Vec<Outcome>,
    pub frontier: Vec<(Vec<u8>, u32)>,
    pub dependencies: bool,
    pub slots: Option<Vec<SlotRange>>,
    pub held: u64,
}

/// Slots `first..=last`.
pub type SlotRange = (u16, u16);

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: usize = 16384;

/// A set of hash slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSet([u64; SLOTS / 64]);

impl Default for SlotSet {
    fn default() -> Self {
        SlotSet([0; SLOTS / 64])
    }
}

impl SlotSet {
    pub fn of(ranges: &[SlotRange]) -> SlotSet {
        let mut s = SlotSet::default();
        s.add(ranges);
        s
    }

    pub fn add(&mut self, ranges: &[SlotRange]) {
        for &(a, b) in ranges {
            for slot in usize::from(a)..=usize::from(b).min(SLOTS - 1) {
                self.0[slot / 64] |= 1 << (slot % 64);
            }
        }
    }

    pub fn contains(&self, slot: usize) -> bool {
        slot < SLOTS && self.0[slot / 64] & (1 << (slot % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The slots of `self` that `other` lacks.
    pub fn minus(&self, other: &SlotSet) -> SlotSet {
        let mut out = self.clone();
        for (w, o) in out.0.iter_mut().zip(other.0.iter()) {
            *w &= !o;
        }
        out
    }

    /// Whether any slot of `ranges` is in the set.
    pub fn meets(&self, ranges: &[SlotRange]) -> bool {
        ranges
            .iter()
            .any(|&(a, b)| (usize::from(a)..=usize::from(b)).any(|s| self.contains(s)))
    }

    /// The set as ranges, lowest first.
    pub fn ranges(&self) -> Vec<SlotRange> {
        let mut out: Vec<SlotRange> = Vec::new();
        for slot in (0..SLOTS).filter(|&s| self.contains(s)) {
            let slot = slot as u16;
            match out.last_mut() {
                Some((_, b)) if *b + 1 == slot => *b = slot,
                _ => out.push((slot, slot)),
            }
        }
        out
    }
}

/// Ranges as `CLUSTER NODES` writes them: `0-5460,5462`.
pub fn ranges_text(ranges: &[SlotRange]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------- encoding

struct Out(Vec<u8>);

impl Out {
    fn u64(&mut self, mut n: u64) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn value(&mut self, v: &Reply) {
        match v {
            Reply::Nil | Reply::Sent => self.0.push(0),
            Reply::Ok => self.0.push(1),
            Reply::Int(n) => {
                self.0.push(2);
                self.0.extend_from_slice(&n.to_le_bytes());
            }
            Reply::Double(x) => {
                self.0.push(3);
                self.0.extend_from_slice(&x.to_le_bytes());
            }
            Reply::Bulk(b) => {
                self.0.push(4);
                self.bytes(b);
            }
            Reply::Array(items) => {
                self.0.push(5);
                self.u64(items.len() as u64);
                items.iter().for_each(|i| self.value(i));
            }
            Reply::Map(pairs) => {
                self.0.push(6);
                self.u64(pairs.len() as u64);
                for (k, v) in pairs {
                    self.bytes(k.as_bytes());
                    self.value(v);
                }
            }
        }
    }
    fn outcome(&mut self, o: &Outcome) {
        match o {
            Ok(v) => self.value(v),
            Err(e) => {
                self.0.push(ERROR);
                self.bytes(e.as_bytes());
            }
        }
    }
}

/// The tag of an error reply (only at the top of an answer).
const ERROR: u8 = 7;

struct In<'a>(&'a [u8]);

type R<T> = std::result::Result<T, String>;

impl In<'_> {
    fn u64(&mut self) -> R<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or("truncated message")?;
            self.0 = rest;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("bad varint".into())
    }
    fn len(&mut self) -> R<usize> {
        let n = usize::try_from(self.u64()?).map_err(|_| "bad length")?;
        if n > self.0.len() {
            return Err("truncated message".into());
        }
        Ok(n)
    }
    fn bytes(&mut self) -> R<Vec<u8>> {
        let n = self.len()?;
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b.to_vec())
    }
    fn fixed(&mut self) -> R<[u8; 8]> {
        if self.0.len() < 8 {
            return Err("truncated message".into());
        }
        let (b, rest) = self.0.split_at(8);
        self.0 = rest;
        Ok(b.try_into().unwrap_or([0; 8]))
    }
    fn byte(&mut self) -> R<u8> {
        let (&b, rest) = self.0.split_first().ok_or("truncated message")?;
        self.0 = rest;
        Ok(b)
    }
    fn value(&mut self, tag: u8, depth: u32) -> R<Reply> {
        if depth > 32 {
            return Err("reply nested too deep".into());
        }
        Ok(match tag {
            0 => Reply::Nil,
            1 => Reply::Ok,
            2 => Reply::Int(i64::from_le_bytes(self.fixed()?)),
            3 => Reply::Double(f64::from_le_bytes(self.fixed()?)),
            4 => Reply::Bulk(self.bytes()?),
            5 => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let tag = self.byte()?;
                    items.push(self.value(tag, depth + 1)?);
                }
                Reply::Array(items)
            }
            6 => {
                let n = self.len()?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = String::from_utf8_lossy(&self.bytes()?).into_owned();
                    let tag = self.byte()?;
                    pairs.push((k, self.value(tag, depth + 1)?));
                }
                Reply::Map(pairs)
            }
            t => return Err(format!("unknown reply type {t}")),
        })
    }
    fn outcome(&mut self) -> R<Outcome> {
        match self.byte()? {
            ERROR => Ok(Err(String::from_utf8_lossy(&self.bytes()?).into_owned())),
            tag => Ok(Ok(self.value(tag, 0)?)),
        }
    }
    fn end(&self) -> R<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes".into())
        }
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Out(Vec::new());
        o.u64(self.id);
        o.u64(u64::from(self.db));
        match &self.user {
            Some(u) => {
                o.0.push(1);
                o.bytes(u);
            }
            None => o.0.push(0),
        }
        o.u64(self.commands.len() as u64);
        for c in &self.commands {
            o.u64(c.len() as u64);
            c.iter().for_each(|a| o.bytes(a));
        }
        o.0
    }

    pub fn decode(b: &[u8]) -> R<Request> {
        let mut i = In(b);
        let id = i.u64()?;
        let db = u32::try_from(i.u64()?).map_err(|_| "bad database")?;
        let user = match i.byte()? {
            0 => None,
            1 => Some(i.bytes()?),
            _ => return Err("bad user flag".into()),
        };
        let n = i.len()?;
        let mut commands = Vec::with_capacity(n);
        for _ in 0..n {
            let argc = i.len()?;
            let mut argv = Vec::with_capacity(argc);
            for _ in 0..argc {
                argv.push(i.bytes()?);
            }
            commands.push(argv);
        }
        i.end()?;
        Ok(Request {
            id,
            db,
            user,
            commands,
        })
    }
}

impl Answer {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Out(Vec::new());
        o.u64(self.id);
        o.u64(self.replies.len() as u64);
        self.replies.iter().for_each(|r| o.outcome(r));
        o.u64(self.frontier.len() as u64);
        for (k, left) in &self.frontier {
            o.bytes(k);
            o.u64(u64::from(*left));
        }
        o.0.push(u8::from(self.dependencies));
        if let Some(slots) = &self.slots {
            o.u64(slots.len() as u64);
            for &(a, b) in slots {
                o.u64(u64::from(a));
                o.u64(u64::from(b));
            }
            // Only when there is something held: otherwise the answer reads as before.
            if self.held > 0 {
                o.u64(self.held);
            }
        }
        o.0
    }

    pub fn decode(b: &[u8]) -> R<Answer> {
        let mut i = In(b);
        let id = i.u64()?;
        let n = i.len()?;
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(i.outcome()?);
        }
        let n = i.len()?;
        let mut frontier = Vec::with_capacity(n);
        for _ in 0..n {
            let k = i.bytes()?;
            let left = u32::try_from(i.u64()?).map_err(|_| "bad depth")?;
            frontier.push((k, left));
        }
        let dependencies = i.byte()? != 0;
        // An older build ends here: it does not say which slots it served.
        let mut held = 0;
        let slots = if i.end().is_ok() {
            None
        } else {
            let n = i.len()?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let slot = |x: u64| u16::try_from(x).ok().filter(|&s| usize::from(s) < SLOTS);
                let a = slot(i.u64()?).ok_or("bad slot")?;
                let b = slot(i.u64()?).ok_or("bad slot")?;
                if a > b {
                    return Err("bad slot range".into());
                }
                v.push((a, b));
            }
            if i.end().is_err() {
                // Written only when some keys are held.
                held = i.u64()?;
                if held == 0 {
                    return Err("bad held count".into());
                }
            }
            Some(v)
        };
        i.end()?;
        Ok(Answer {
            id,
            replies,
            frontier,
            dependencies,
            slots,
            held,
        })
    }
}

// ---------------------------------------------------------------- the masters

/// A master a cluster-wide command must reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub id: String,
    pub myself: bool,
    /// The cluster considers it failed (`fail` or `fail?`).
    pub failing: bool,
    /// The slots it serves (migrations left out).
    pub slots: Vec<SlotRange>,
}

/// The masters in `CLUSTER NODES` output. A master that failed and serves no slot is left out:
/// its slots went to another master (a failover) or it was emptied; one that failed and still
/// serves slots is kept, so the command reports it as not answering.
pub fn masters(cluster_nodes: &str) -> Vec<Master> {
    let mut out = Vec::new();
    for line in cluster_nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            continue;
        }
        let flags: Vec<&str> = fields[2].split(',').collect();
        if !flags.contains(&"master") || flags.contains(&"handshake") || flags.contains(&"noaddr") {
            continue;
        }
        let failing = flags.contains(&"fail") || flags.contains(&"fail?");
        // Slot ranges follow the link state; `[slot->-node]` entries are migrations.
        let slots: Vec<SlotRange> = fields[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| parse_range(s))
            .collect();
        if failing && slots.is_empty() {
            continue;
        }
        out.push(Master {
            id: fields[0].to_string(),
            myself: flags.contains(&"myself"),
            failing,
            slots,
        });
    }
    out
}

/// `5460` or `0-5460`.
fn parse_range(s: &str) -> Option<SlotRange> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b && usize::from(b) < SLOTS).then_some((a, b))
}

/// The slots this node serves as a master, from `CLUSTER NODES` (none when it is a replica).
pub fn my_slots(cluster_nodes: &str) -> Vec<SlotRange> {
    masters(cluster_nodes)
        .into_iter()
        .find(|m| m.myself)
        .map(|m| m.slots)
        .unwrap_or_default()
}

// ---------------------------------------------------------------- combining replies

/// How the masters' replies to one command combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Integers, added up (CACHE.INVALIDATE, CACHE.WRITE).
    Sum,
    /// Sorted arrays of keys: their union, sorted (CACHE.KEYS).
    Keys,
    /// `[tag, entries]` pairs: entries added up per tag, largest first, at most `count`.
    Tags(Option<usize>),
    /// CACHE.STATS maps: see `merge_stats`.
    Stats,
    /// The first reply (CACHE.RULE, CACHE.RELATE: the same change on every master).
    First,
}

/// Combines replies (this node's first). An error from any master is the result.
pub fn combine(merge: &Merge, outcomes: Vec<Outcome>) -> Outcome {
    let replies = outcomes
        .into_iter()
        .collect::<std::result::Result<Vec<Reply>, String>>()?;
    Ok(match merge {
        Merge::Sum => Reply::Int(
            replies
                .iter()
                .map(|r| if let Reply::Int(n) = r { *n } else { 0 })
                .fold(0i64, i64::saturating_add),
        ),
        Merge::Keys => {
            let mut keys = BTreeSet::new();
            for r in replies {
                if let Reply::Array(items) = r {
                    keys.extend(items.into_iter().filter_map(|v| match v {
                        Reply::Bulk(b) => Some(b),
                        _ => None,
                    }));
                }
            }
            Reply::Array(keys.into_iter().map(Reply::Bulk).collect())
        }
        Merge::Tags(count) => {
            let mut sizes: AHashMap<Vec<u8>, i64> = AHashMap::new();
            for r in replies {
                let Reply::Array(pairs) = r else { continue };
                for p in pairs {
                    if let Reply::Array(p) = p {
                        if let [Reply::Bulk(t), Reply::Int(n)] = &p[..] {
                            *sizes.entry(t.clone()).or_default() += n;
                        }
                    }
                }
            }
            let mut sizes: Vec<(Vec<u8>, i64)> = sizes.into_iter().collect();
            sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            if let Some(n) = count {
                sizes.truncate(*n);
            }
            Reply::Array(
                sizes
                    .into_iter()
                    .map(|(t, n)| Reply::Array(vec![Reply::Bulk(t), Reply::Int(n)]))
                    .collect(),
            )
        }
        Merge::Stats => {
            let n = replies.len() as i64;
            let mut merged = merge_stats(&replies);
            if let Reply::Map(pairs) = &mut merged {
                pairs.push(("masters".into(), Reply::Int(n)));
            }
            merged
        }
        Merge::First => replies.into_iter().next().unwrap_or(Reply::Nil),
    })
}

fn get<'a>(v: &'a Reply, path: &[&str]) -> Option<&'a Reply> {
    let mut v = v;
    for name in path {
        let Reply::Map(pairs) = v else { return None };
        v = &pairs.iter().find(|(k, _)| k == name)?.1;
    }
    Some(v)
}

fn number(v: Option<&Reply>) -> f64 {
    match v {
        Some(Reply::Int(n)) => *n as f64,
        Some(Reply::Double(x)) => *x,
        _ => 0.0,
    }
}

fn level_rank(b: &[u8]) -> u8 {
    match b {
        b"critical" => 2,
        b"warning" => 1,
        _ => 0,
    }
}

/// Merges CACHE.STATS maps of several masters. Counters are added up; `max_*` and the
/// percentiles take the largest (a percentile over the cluster is at most that: an upper
/// bound); `metrics_since_ms` the earliest; thresholds are configs (the first node's); the alert
/// level the worst; averages are weighted (by each node's count of operations, or of
/// invalidations) and `hit_rate` and `avg_keys_per_invalidation` computed again from the sums.
/// `most_common_patterns` keeps the 10 largest sums.
pub fn merge_stats(nodes: &[Reply]) -> Reply {
    let Some(first) = nodes.first() else {
        return Reply::Map(Vec::new());
    };
    let mut out = merge_at(nodes, first, &mut Vec::new());
    let hits = number(get(&out, &["hits"]));
    let misses = number(get(&out, &["misses"]));
    let rate = if hits + misses > 0.0 {
        hits * 100.0 / (hits + misses)
    } else {
        0.0
    };
    set(&mut out, &["hit_rate"], Reply::Double(round(rate)));
    let inv = number(get(&out, &["total_invalidations"]));
    let keys = number(get(&out, &["total_keys_invalidated"]));
    if get(&out, &["efficiency", "avg_keys_per_invalidation"]).is_some() {
        let avg = if inv > 0.0 { keys / inv } else { 0.0 };
        set(
            &mut out,
            &["efficiency", "avg_keys_per_invalidation"],
            Reply::Double(round(avg)),
        );
    }
    out
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn set(v: &mut Reply, path: &[&str], new: Reply) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut v = v;
    for name in parents {
        let Reply::Map(pairs) = v else { return };
        let Some(pos) = pairs.iter().position(|(k, _)| k == name) else {
            return;
        };
        v = &mut pairs[pos].1;
    }
    if let Reply::Map(pairs) = v {
        if let Some(slot) = pairs.iter_mut().find(|(k, _)| k == last) {
            slot.1 = new;
        }
    }
}

fn merge_at(nodes: &[Reply], shape: &Reply, path: &mut Vec<String>) -> Reply {
    let at = |n: &Reply, path: &[String]| -> Option<Reply> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        get(n, &p).cloned()
    };
    let name = path.last().cloned().unwrap_or_default();
    let name = name.as_str();
    match shape {
        Reply::Map(pairs) => {
            // Keys of every node's map, in the first node's order then new ones.
            let mut keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
            for n in &nodes[1..] {
                if let Some(Reply::Map(p)) = at(n, path) {
                    for (k, _) in p {
                        if !keys.contains(&k) {
                            keys.push(k);
                        }
                    }
                }
            }
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                path.push(k.clone());
                let shape = nodes.iter().find_map(|n| at(n, path)).unwrap_or(Reply::Nil);
                out.push((k, merge_at(nodes, &shape, path)));
                path.pop();
            }
            if name == "most_common_patterns" {
                out.sort_by(|a, b| number(Some(&b.1)).total_cmp(&number(Some(&a.1))));
                out.truncate(10);
            }
            Reply::Map(out)
        }
        Reply::Int(_) => {
            let values: Vec<i64> = nodes
                .iter()
                .filter_map(|n| match at(n, path) {
                    Some(Reply::Int(v)) => Some(v),
                    _ => None,
                })
                .collect();
            let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
            Reply::Int(
                if name.starts_with("max_") || name.ends_with("_us") && name != "avg_us" {
                    values.into_iter().max().unwrap_or(0)
                } else if parent == Some("thresholds") {
                    values.first().copied().unwrap_or(0)
                } else if name == "metrics_since_ms" {
                    values.into_iter().min().unwrap_or(0)
                } else {
                    values.into_iter().fold(0i64, i64::saturating_add)
                },
            )
        }
        Reply::Double(_) => {
            if name.starts_with("max_") {
                let m = nodes
                    .iter()
                    .map(|n| number(at(n, path).as_ref()))
                    .fold(0.0, f64::max);
                return Reply::Double(m);
            }
            if name.starts_with("avg_") {
                // Weighted by the sibling `count`, or else by the node's invalidations.
                let mut sibling = path.clone();
                sibling.pop();
                sibling.push("count".into());
                let (mut sum, mut weight) = (0.0, 0.0);
                for n in nodes {
                    let w = match at(n, &sibling) {
                        Some(c) => number(Some(&c)),
                        None => number(get(n, &["total_invalidations"])),
                    };
                    sum += number(at(n, path).as_ref()) * w;
                    weight += w;
                }
                return Reply::Double(if weight > 0.0 {
                    round(sum / weight)
                } else {
                    0.0
                });
            }
            Reply::Double(round(
                nodes.iter().map(|n| number(at(n, path).as_ref())).sum(),
            ))
        }
        Reply::Bulk(_) if name == "current_alert_level" => nodes
            .iter()
            .filter_map(|n| match at(n, path) {
                Some(Reply::Bulk(b)) => Some(b),
                _ => None,
            })
            .max_by_key(|b| level_rank(b))
            .map_or(Reply::Nil, Reply::Bulk),
        other => other.clone(),
    }
}

/// The JSON form of a reply, as the bulk string the `JSON` option of CACHE.STATS and
/// CACHE.RECOMMEND answers with.
pub fn as_json(v: &Reply) -> Reply {
    Reply::Bulk(to_json(v).into_bytes())
}

/// A reply as JSON text (maps keep their order; bytes that are not UTF-8 are replaced).
pub fn to_json(v: &Reply) -> String {
    match v {
        Reply::Nil | Reply::Sent => "null".into(),
        Reply::Ok => "\"OK\"".into(),
        Reply::Int(n) => n.to_string(),
        Reply::Double(x) => serde_json::Value::from(*x).to_string(),
        Reply::Bulk(b) => serde_json::Value::from(String::from_utf8_lossy(b)).to_string(),
        Reply::Array(items) => {
            let items: Vec<String> = items.iter().map(to_json).collect();
            format!("[{}]", items.join(","))
        }
        Reply::Map(pairs) => {
            let items: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::Value::from(k.as_str()), to_json(v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

/// Groups a cascade frontier by hops left: one `DEPENDENTS` request per group, `DEPTH` one less
/// than the hops left (the dependents themselves take one hop).
pub fn frontier_groups(frontier: Vec<(Vec<u8>, u32)>) -> Vec<(u32, Vec<Vec<u8>>)> {
    let mut groups: Vec<(u32, Vec<Vec<u8>>)> = Vec::new();
    for (k, left) in frontier {
        match groups.iter_mut().find(|(l, _)| *l == left) {
            Some((_, keys)) => keys.push(k),
            None => groups.push((left, vec![k])),
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.0));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn requests_and_answers_round_trip() {
        let r = Request {
            id: 7,
            db: 3,
            user: Some(b"alice".to_vec()),
            commands: vec![vec![b"cache.invalidate".to_vec(), b"ALL".to_vec()], vec![]],
        };
        assert_eq!(Request::decode(&r.encode()), Ok(r));
        let a = Answer {
            id: u64::MAX,
            replies: vec![
                Ok(Reply::Int(-3)),
                Ok(Reply::Map(vec![("x".into(), Reply::Double(1.5))])),
                Ok(Reply::Array(vec![bulk("k"), Reply::Nil, Reply::Ok])),
                Err("ERR no".into()),
            ],
            frontier: vec![(b"k".to_vec(), 4)],
            dependencies: true,
            slots: Some(vec![(0, 5460), (5462, 5462)]),
            held: 0,
        };
        assert_eq!(Answer::decode(&a.encode()), Ok(a.clone()));
        // Keys held back: one more number at the end; none held reads as before.
        let holding = Answer {
            frontier: Vec::new(),
            held: 200_000,
            ..a.clone()
        };
        let b = holding.encode();
        assert_eq!(Answer::decode(&b), Ok(holding));
        assert!(Answer::decode(&[b.clone(), vec![0]].concat()).is_err());
        let bytes = a.encode();
        assert!(Answer::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Answer::decode(&[bytes.clone(), vec![0]].concat()).is_err());
        // An older build's answer ends after `dependencies`: it says no slots.
        let old = Answer {
            slots: None,
            ..a.clone()
        };
        let old_bytes = old.encode();
        assert_eq!(old_bytes.len(), bytes.len() - 8);
        assert_eq!(Answer::decode(&old_bytes), Ok(old));
        // A replica's answer: no slot at all.
        let none = Answer {
            slots: Some(Vec::new()),
            ..a
        };
        assert_eq!(Answer::decode(&none.encode()), Ok(none));
        // Slots past the last one, or a range upside down, are refused.
        for bad in [(0u64, 16384u64), (9, 3)] {
            let mut o = Out(old_bytes.clone());
            o.u64(1);
            o.u64(bad.0);
            o.u64(bad.1);
            let b = o.0;
            assert!(Answer::decode(&b).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn slot_sets_say_what_is_left_uncovered() {
        let all = SlotSet::of(&[(0, 16383)]);
        let mut covered = SlotSet::of(&[(0, 5460)]);
        covered.add(&[(10923, 16383)]);
        let missing = all.minus(&covered);
        assert_eq!(missing.ranges(), vec![(5461, 10922)]);
        assert!(missing.meets(&[(10000, 10001)]) && !missing.meets(&[(0, 5460)]));
        assert_eq!(ranges_text(&[(0, 2), (5, 5)]), "0-2,5");
        covered.add(&[(5461, 10922)]);
        assert!(all.minus(&covered).is_empty());
        assert_eq!(
            SlotSet::of(&[(3, 3), (4, 6), (9, 9)]).ranges(),
            vec![(3, 6), (9, 9)]
        );
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(&bytes);
            let _ = Answer::decode(&bytes);
        }
    }

    #[test]
    fn masters_come_from_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 127.0.0.1:7005@17005 master,fail - 0 0 5 disconnected
f6 127.0.0.1:7006@17006 master - 0 0 6 connected
";
        let m = masters(text);
        let ids: Vec<&str> = m.iter().map(|m| m.id.as_str()).collect();
        // The failed master without slots (failed over) is left out; the empty live one is not.
        assert_eq!(ids, vec!["a1", "b2", "c3", "f6"]);
        assert!(m[0].myself && !m[1].myself);
        assert!(m[2].failing && !m[3].failing);
        assert_eq!(m[0].slots, vec![(0, 5460)]);
        assert!(m[3].slots.is_empty());
        assert_eq!(my_slots(text), vec![(0, 5460)]);
        let migrating =
            "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-9 12 [13->-b2] [14-<-c3]";
        assert_eq!(my_slots(migrating), vec![(0, 9), (12, 12)]);
        let replica = "d4 127.0.0.1:7004@17004 myself,slave a1 0 0 1 connected";
        assert!(my_slots(replica).is_empty());
    }

    #[test]
    fn sums_keys_and_tags_combine() {
        assert_eq!(
            combine(&Merge::Sum, vec![Ok(Reply::Int(2)), Ok(Reply::Int(3))]),
            Ok(Reply::Int(5))
        );
        let e: Outcome = Err("ERR x".into());
        assert_eq!(combine(&Merge::Sum, vec![Ok(Reply::Int(2)), e.clone()]), e);
        let keys = combine(
            &Merge::Keys,
            vec![
                Ok(Reply::Array(vec![bulk("b"), bulk("d")])),
                Ok(Reply::Array(vec![bulk("a"), bulk("b")])),
            ],
        );
        assert_eq!(
            keys,
            Ok(Reply::Array(vec![bulk("a"), bulk("b"), bulk("d")]))
        );
        let pair = |t: &str, n| Reply::Array(vec![bulk(t), Reply::Int(n)]);
        let tags = combine(
            &Merge::Tags(Some(2)),
            vec![
                Ok(Reply::Array(vec![pair("x", 3), pair("y", 2)])),
                Ok(Reply::Array(vec![pair("y", 2), pair("z", 1)])),
            ],
        );
        assert_eq!(tags, Ok(Reply::Array(vec![pair("y", 4), pair("x", 3)])));
    }

    #[test]
    fn stats_merge_adds_counters_and_recomputes_rates() {
        let node = |hits, misses, inv, keys, avg_us, count, level: &str, max| {
            Reply::Map(vec![
                ("entries".into(), Reply::Int(hits)),
                ("hits".into(), Reply::Int(hits)),
                ("misses".into(), Reply::Int(misses)),
                ("hit_rate".into(), Reply::Double(0.0)),
                ("total_invalidations".into(), Reply::Int(inv)),
                ("total_keys_invalidated".into(), Reply::Int(keys)),
                (
                    "thresholds".into(),
                    Reply::Map(vec![
                        ("warning_per_hour".into(), Reply::Int(50)),
                        ("current_alert_level".into(), bulk(level)),
                    ]),
                ),
                (
                    "efficiency".into(),
                    Reply::Map(vec![
                        ("avg_keys_per_invalidation".into(), Reply::Double(0.0)),
                        ("avg_duration_ms".into(), Reply::Double(avg_us)),
                        ("max_duration_ms".into(), Reply::Double(max)),
                    ]),
                ),
                (
                    "operations".into(),
                    Reply::Map(vec![(
                        "get".into(),
                        Reply::Map(vec![
                            ("count".into(), Reply::Int(count)),
                            ("avg_us".into(), Reply::Double(avg_us)),
                            ("p99_us".into(), Reply::Int(count * 10)),
                        ]),
                    )]),
                ),
                (
                    "patterns".into(),
                    Reply::Map(vec![(
                        "most_common_patterns".into(),
                        Reply::Map(vec![("tag a".into(), Reply::Int(inv))]),
                    )]),
                ),
            ])
        };
        let a = node(30, 10, 1, 4, 10.0, 1, "normal", 2.0);
        let b = node(10, 50, 3, 8, 30.0, 3, "warning", 1.0);
        let m = combine(&Merge::Stats, vec![Ok(a), Ok(b)]).expect("merged");
        assert_eq!(get(&m, &["entries"]), Some(&Reply::Int(40)));
        assert_eq!(get(&m, &["hit_rate"]), Some(&Reply::Double(40.0)));
        assert_eq!(
            get(&m, &["thresholds", "warning_per_hour"]),
            Some(&Reply::Int(50))
        );
        assert_eq!(
            get(&m, &["thresholds", "current_alert_level"]),
            Some(&bulk("warning"))
        );
        assert_eq!(
            get(&m, &["efficiency", "avg_keys_per_invalidation"]),
            Some(&Reply::Double(3.0))
        );
        // (10 * 1 + 30 * 3) / 4 invalidations.
        assert_eq!(
            get(&m, &["efficiency", "avg_duration_ms"]),
            Some(&Reply::Double(25.0))
        );
        assert_eq!(
            get(&m, &["efficiency", "max_duration_ms"]),
            Some(&Reply::Double(2.0))
        );
        assert_eq!(
            get(&m, &["operations", "get", "avg_us"]),
            Some(&Reply::Double(25.0))
        );
        assert_eq!(
            get(&m, &["operations", "get", "p99_us"]),
            Some(&Reply::Int(30))
        );
        assert_eq!(
            get(&m, &["patterns", "most_common_patterns", "tag a"]),
            Some(&Reply::Int(4))
        );
        assert_eq!(get(&m, &["masters"]), Some(&Reply::Int(2)));
        assert!(to_json(&m).starts_with("{\"entries\":40,"));
    }

    #[test]
    fn frontier_groups_by_hops_left() {
        let g = frontier_groups(vec![
            (b"a".to_vec(), 1),
            (b"b".to_vec(), 3),
            (b"c".to_vec(), 1),
        ]);
        assert_eq!(
            g,
            vec![
                (3, vec![b"b".to_vec()]),
                (1, vec![b"a".to_vec(), b"c".to_vec()])
            ]
        );
    }
}
